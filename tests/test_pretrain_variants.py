"""Architectures, precision, activation checkpointing and batch ramp through the real training loop."""

from __future__ import annotations

import json

import pytest
from pretrain_tokens import markov_tokens, write_recipe

from llmforge.recipe import load_recipe


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return markov_tokens(tmp_path_factory.mktemp("variants") / "tokens")


def train(tmp_path, tokens, name, model=None, **train_keys):
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / f"{name}.toml", tmp_path, name=name, model=model, train=train_keys)
    result = run_pretraining(load_recipe(recipe), tokens).results
    rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return result, [r for r in rows if "lr" in r]


@pytest.mark.parametrize("arch", ["gpt-neox", "gpt2"])
def test_other_architectures_learn_and_reload(tmp_path, tokens, arch):
    from transformers import AutoConfig

    result, rows = train(tmp_path, tokens, arch, model={"arch": arch}, max_steps=20, eval_every=20)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    config = AutoConfig.from_pretrained(result["checkpoint"])
    if arch == "gpt-neox":
        assert config.use_parallel_residual and config.rope_parameters["partial_rotary_factor"] == 0.25


def test_bf16_mixed_precision_trains_on_cpu(tmp_path, tokens):
    result, rows = train(tmp_path, tokens, "bf16", precision="bf16-mixed", max_steps=20, eval_every=20)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    assert result["precision"] == "bf16-mixed"


def test_activation_checkpointing_gives_the_same_losses(tmp_path, tokens):
    _, plain = train(tmp_path, tokens, "plain", max_steps=5, eval_every=5)
    _, ckpt = train(tmp_path, tokens, "ckpt", max_steps=5, eval_every=5, activation_checkpointing=True)
    assert [r["loss"] for r in ckpt] == pytest.approx([r["loss"] for r in plain], rel=1e-5)


def test_batch_ramp_grows_tokens_per_step(tmp_path, tokens):
    result, rows = train(
        tmp_path,
        tokens,
        "ramp",
        max_steps=12,
        eval_every=12,
        global_batch_tokens=512,
        batch_ramp_tokens=2048,
        batch_ramp_start_tokens=128,
    )
    per_step = [b["tokens"] - a["tokens"] for a, b in zip([{"tokens": 0}, *rows[:-1]], rows, strict=True)]
    assert per_step[0] == 128  # 4 sequences of 32
    assert per_step == sorted(per_step) and per_step[-1] == 512
    assert all(n % 128 == 0 for n in per_step)  # whole micro-batches
    assert result["tokens_seen"] == sum(per_step)


def test_activation_checkpointing_is_switched_on():
    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model, enable_activation_checkpointing

    model = build_model(ModelConfig(n_layers=2, d_model=32, n_heads=2), vocab_size=64, eos_id=0, seed=0)
    enable_activation_checkpointing(model)
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing


@pytest.mark.slow
def test_torch_compile_gives_the_eager_losses(tmp_path, tokens):
    """train.compile on CPU (inductor + the C compiler; compiling takes most of this test's time)."""
    from torch._dynamo.utils import counters

    _, eager = train(tmp_path, tokens, "eager", max_steps=2, eval_every=2)
    counters.clear()
    result, compiled = train(tmp_path, tokens, "compiled", max_steps=2, eval_every=2, compile=True)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really captured the model
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=1e-4)
    assert result["final_val_loss"] == pytest.approx(eager[-1]["val_loss"], rel=1e-4)
