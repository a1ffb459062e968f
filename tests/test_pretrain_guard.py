"""Loss-spike guard on an injected spike, and bad input: exit 2 with what to change, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pretrain_tokens import markov_tokens, write_recipe, write_tokens

from llmforge.artifacts.tokens import TokenShards, TokenWindows
from llmforge.console import UserError
from llmforge.recipe import load_recipe

SPIKE_STEP = 24  # 0-based optimizer step whose whole batch is poisoned
SEED = 7  # write_recipe's run.seed: the window order the trainer will use


def poisoned_tokens(path: Path, rows: int, seq_len: int) -> Path:
    """Markov tokens whose batch at SPIKE_STEP is replaced by uniform noise (a corrupt data shard)."""
    clean = markov_tokens(path.with_name("clean"))
    shards = TokenShards(clean, "train")
    train = shards.read(0, len(shards))
    val = TokenShards(clean, "val").read(0, len(TokenShards(clean, "val")))
    windows = TokenWindows(shards, seq_len, seed=SEED)
    noise = np.random.default_rng(1).integers(0, 63, size=seq_len + 1)
    for position in range(SPIKE_STEP * rows, (SPIKE_STEP + 1) * rows):
        w = int(windows._order_for(0)[position])
        train[w * seq_len : (w + 1) * seq_len + 1] = noise
    return write_tokens(path, train, val, vocab_size=64, eos_id=63)


def events(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("event") == "spike"]


def test_skip_policy_drops_the_poisoned_batch(tmp_path):
    from llmforge.pretrain.run import run_pretraining

    tokens = poisoned_tokens(tmp_path / "tokens", rows=8, seq_len=32)
    recipe = write_recipe(
        tmp_path / "r.toml", tmp_path, train={"max_steps": 30, "spike": {"window": 8, "min_history": 8}}
    )
    result = run_pretraining(load_recipe(recipe), tokens).results
    (event,) = events(tmp_path / "t")
    assert event["step"] == SPIKE_STEP and event["action"] == "skip"
    assert result["spike_events"] == [event]
    assert result["tokens_seen"] == 29 * 256  # the spiking batch's update was dropped
    assert result["steps"] == 30


def test_rollback_policy_restores_skips_and_lowers_lr(tmp_path):
    from llmforge.pretrain.run import run_pretraining
    from llmforge.pretrain.schedule import lr_at

    tokens = poisoned_tokens(tmp_path / "tokens", rows=8, seq_len=32)
    spike = {"policy": "rollback", "window": 8, "min_history": 8, "skip_batches": 3, "lr_factor": 0.5}
    recipe = write_recipe(
        tmp_path / "r.toml", tmp_path, train={"max_steps": 30, "schedule": "constant", "spike": spike}
    )
    run_pretraining(load_recipe(recipe), tokens)
    (event,) = events(tmp_path / "t")
    assert event["action"] == "rollback" and event["restored_step"] == 20 and event["lr_factor"] == 0.5
    rows = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    lr = {r["step"]: r["lr"] for r in rows}
    cfg = load_recipe(recipe).train
    assert lr[20] == lr_at(19, cfg) and lr[21] == 0.5 * lr_at(20, cfg)
    assert max(r["loss"] for r in rows if r["step"] > 20) < 2.0  # the poisoned batch never came back
    assert [r["step"] for r in rows] == list(range(1, 31))  # the abandoned steps 21-24 were dropped


# ------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def tokens(tmp_path) -> Path:
    return markov_tokens(tmp_path / "tokens")


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        (
            {"vocab_size": 32},
            {},
            "model.vocab_size = 32 is smaller than the tokens artifact's vocabulary of 64",
        ),
        ({"max_seq_len": 16}, {"seq_len": 32}, "train.seq_len = 32 exceeds the model's context of 16"),
        ({}, {"precision": "fp16-mixed"}, "train.precision = 'fp16-mixed'"),
        ({"init_from": "/nonexistent"}, {}, "not a Hugging Face model directory"),
        ({}, {"seq_len": 8, "global_batch_tokens": 64, "micro_batch": 8, "eval_tokens": 8}, None),
    ],
)
def test_preflight_rejects_bad_input(tmp_path, tokens, model, train, message):
    from llmforge.pretrain.preflight import preflight

    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, model=model, train=train))
    if message is None:  # the control case passes
        assert preflight(recipe, tokens, resume=False, world_size=1, cuda=False).vocab_size == 64
        return
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preflight(recipe, tokens, resume=False, world_size=1, cuda=False)


def test_fsdp_refuses_fp16(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight

    train = {"precision": "fp16-mixed", "distributed": {"strategy": "fsdp"}}
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train=train))
    with pytest.raises(UserError, match="use 'bf16-mixed'"):
        preflight(recipe, tokens, resume=False, world_size=2, cuda=True)


def test_preflight_checks_batch_against_world_size(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight

    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train={"micro_batch": 8}))
    with pytest.raises(UserError, match="not a multiple of train.micro_batch × processes = 8 × 3"):
        preflight(recipe, tokens, resume=False, world_size=3, cuda=False)


def test_resume_without_checkpoint_and_tokens_too_short(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight

    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path))
    with pytest.raises(UserError, match="--resume: .* holds no complete checkpoint"):
        preflight(recipe, tokens, resume=True, world_size=1, cuda=False)
    short = write_tokens(tmp_path / "short", np.arange(100), np.arange(10), vocab_size=128, eos_id=0)
    with pytest.raises(UserError, match="split 'val' has 10 tokens, fewer than one window"):
        preflight(recipe, short, resume=False, world_size=1, cuda=False)


def test_cli_exits_2_on_corrupt_tokens_and_writes_nothing(tmp_path, tokens, cli):
    shard = tokens / "train" / "00000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])  # truncated mid-token
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, name="run")
    r = cli("pretrain", str(recipe), "--tokens", str(tokens))
    assert r.returncode == 2, r.stderr
    assert "not a whole number of uint16 tokens" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()

    r = cli("pretrain", str(recipe), "--tokens", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no tokens artifact here" in r.stderr
    r = cli("pretrain", str(recipe), "--set", "train.micro_batch=3")
    assert r.returncode == 2 and "micro_batch = 3 must divide" in r.stderr
    assert not (tmp_path / "run").exists()


def test_changed_model_table_refuses_to_resume(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    recipe_file = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 10})
    run_pretraining(load_recipe(recipe_file), tokens)
    changed = load_recipe(recipe_file, ["model.d_model=64"])
    with pytest.raises(UserError, match=r"different \[model\] table"):
        preflight(changed, tokens, resume=False, world_size=1, cuda=False)


def test_changed_tokens_refuse_to_resume_but_a_rebuild_of_the_same_does_not(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    recipe_file = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 10})
    recipe = load_recipe(recipe_file)
    run_pretraining(recipe, tokens)
    rebuilt = markov_tokens(tmp_path / "rebuilt")  # the same stream written again: same content hash
    assert preflight(recipe, rebuilt, resume=True, world_size=1, cuda=False).resume_from is not None
    other = markov_tokens(tmp_path / "other", seed=1)
    with pytest.raises(UserError, match=r"trained on other tokens.*model\.init_from"):
        preflight(recipe, other, resume=False, world_size=1, cuda=False)
