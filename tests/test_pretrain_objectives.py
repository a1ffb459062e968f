"""The objectives beyond next-token prediction: a tiny BERT (masked LM) and a tiny T5 (span corruption)
train on CPU with falling loss, report accuracy on the scored positions, and resume bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pretrain_tokens import objective_tokens, write_recipe

from llmforge.recipe import load_recipe

BERT = {"arch": "bert", "n_layers": 2, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 32}
T5 = {"arch": "t5", "n_layers": 2, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 32}
TRAIN = {
    "max_steps": 80,
    "global_batch_tokens": 1024,
    "lr": 1e-2,
    "eval_every": 40,
    "checkpoint_every": 20,
    "keep_last": 5,
}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    # Documents repeating one word: a masked or dropped word is known from the rest of its document.
    return objective_tokens(tmp_path_factory.mktemp("objective") / "tokens", repeat_words=True)


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def train_rows(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in rows(run) if "lr" in r}


@pytest.mark.parametrize(("model", "objective"), [(BERT, "mlm"), (T5, "span-corruption")], ids=["mlm", "t5"])
def test_objective_trains_with_falling_loss_and_resumes_bit_for_bit(tmp_path, tokens, model, objective):
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / "r.toml", tmp_path, name="whole", model=model, train=TRAIN)
    result = run_pretraining(load_recipe(recipe), tokens).results
    assert result["objective"] == objective
    whole = train_rows(tmp_path / "whole")
    assert sorted(whole) == list(range(1, 81))
    first, last = whole[1], whole[80]
    assert last["val_loss"] < result["unigram_entropy"] - 1.0
    assert last["loss"] < first["loss"] - 1.0
    assert 0.0 <= first["accuracy"] < last["accuracy"] <= 1.0 and last["val_accuracy"] > 0.3

    # Resume from step 40 in a fresh run directory: every later loss, accuracy and val loss is identical.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "whole" / "checkpoints" / "step-000040", resumed / "checkpoints" / "step-000040"
    )
    shutil.copy(tmp_path / "whole" / "metrics.jsonl", resumed / "metrics.jsonl")
    run_pretraining(load_recipe(recipe, ["run.name=resumed"]), tokens, resume=True)
    again = train_rows(resumed)
    for step in range(41, 81):
        for key in ("loss", "accuracy", "grad_norm"):
            assert again[step][key] == whole[step][key], (step, key)
    assert again[80]["val_loss"] == whole[80]["val_loss"]


def test_masked_lm_checkpoint_loads_as_a_masked_lm_and_scores_the_mask(tmp_path, tokens):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / "r.toml", tmp_path, model=BERT, train={**TRAIN, "max_steps": 4})
    checkpoint = run_pretraining(load_recipe(recipe), tokens).checkpoint
    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = torch.tensor([[tokenizer.convert_tokens_to_ids("w1"), tokenizer.mask_token_id]])
    assert model(ids).logits.shape == (1, 2, len(tokenizer))
