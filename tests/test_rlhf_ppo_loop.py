"""The PPO loop (llmforge/rlhf/ppo.py) on a tiny random chat llama: it learns a programmatic reward, resumes
exactly, keeps dropout off and starts its value head at zero."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_tiny_model import build_tiny_model

from llmforge.rlhf import ppo_math as pm
from llmforge.rlhf.config import PpoConfig
from llmforge.rlhf.ppo import TIMING_KEYS, PpoLoop, PpoModels, state_dirs, value_model_from

USER_TURNS = ["To be", "my lord", "What say you", "Good morrow", "O Romeo", "Speak", "Who is there", "Away"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, shared_data) -> Path:
    """A random 2-layer llama with the ChatML template. Its embeddings are scaled ×5: a random init's
    next-token distribution is nearly uniform over the 300 tokens, which no few-dozen-step run can move;
    sharper (still random) distributions let the test see PPO learn in 30 steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.generation.chat_template import BUILTIN, install

    torch.set_num_threads(1)
    out = build_tiny_model(
        tmp_path_factory.mktemp("ppo") / "policy",
        shared_data / "tinyshakespeare" / "input.txt",
        vocab_size=300,
        context=128,
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    install(tokenizer, model, BUILTIN["chatml"])
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(5.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def letter_fraction(sequences, attention_mask, prompts, completions, columns) -> torch.Tensor:
    """The share of a reply's characters that are letters (byte-level tokens are often not)."""
    return torch.tensor([sum(c.isalpha() for c in text) / max(len(text), 1) for text in completions])


def noisy_letter_fraction(sequences, attention_mask, prompts, completions, columns) -> torch.Tensor:
    """Also draws from python's and numpy's RNGs: a resumed run matches only if both were restored."""
    noise = torch.tensor([random.random() * 0.01 + np.random.rand() * 0.01 for _ in completions])
    return letter_fraction(sequences, attention_mask, prompts, completions, columns) + noise


def make_loop(
    model_dir: Path, run: Path, cfg: PpoConfig, scorer=letter_fraction, *, train_mode: bool = False
) -> PpoLoop:
    """Fresh models from `model_dir` (in train() mode with `train_mode`: the loop must switch them off)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    models = PpoModels(
        policy=AutoModelForCausalLM.from_pretrained(model_dir),
        ref=AutoModelForCausalLM.from_pretrained(model_dir),
        value=value_model_from(model_dir),
    )
    if train_mode:
        for model in (models.policy, models.ref, models.value):
            model.train()
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False
        )
        for t in USER_TURNS
    ]
    run.mkdir(parents=True, exist_ok=True)
    return PpoLoop(
        cfg,
        models,
        tokenizer,
        scorer,
        prompts,
        [{"turn": i} for i in range(len(prompts))],
        stop_ids=[tokenizer.convert_tokens_to_ids("<|im_end|>")],
        seed=0,
        state_dir=run / "state",
        metrics_path=run / "metrics.jsonl",
    )


def read_metrics(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def weights(loop: PpoLoop) -> dict[str, torch.Tensor]:
    return {
        **{f"policy.{k}": v.clone() for k, v in loop.models.policy.state_dict().items()},
        **{f"value.{k}": v.clone() for k, v in loop.models.value.state_dict().items()},
    }


TINY = dict(rollout_batch=8, minibatch_size=4, response_length=10, temperature=1.0)


def test_ppo_raises_a_programmatic_score_and_the_kl_stays_bounded(chat_model, tmp_path):
    cfg = PpoConfig(steps=30, lr=2e-3, kl_coef=0.05, missing_eos_penalty=None, save_every=100, **TINY)
    seen: list[dict] = []
    summary = make_loop(chat_model, tmp_path, cfg).train(on_step=seen.append)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 31)) == [r["step"] for r in seen]
    assert summary["steps_completed"] == 30 and summary["skipped_updates"] == 0
    first = np.mean([r["score"] for r in rows[:3]])
    last = np.mean([r["score"] for r in rows[-5:]])
    assert last > first + 0.2, (first, last)
    assert last > 0.8
    assert rows[0]["kl"] == 0.0  # the policy starts as the reference
    assert max(r["kl"] for r in rows) < 25.0  # nats per 10-token reply (about 10 here; β = 0.05)
    expected = {
        "step", "score", "reward", "kl", "beta", "response_length", "no_stop_fraction", "entropy",
        "policy_clipfrac", "value_clipfrac", "approx_kl", "policy_loss", "value_loss", "skipped_updates",
    }  # fmt: skip
    assert set(rows[0]) == expected
    assert all(r["beta"] == 0.05 for r in rows)
    # the final state is kept for the glue (one dir: save_every = 100 > steps, saved at the end)
    assert [p.name for p in state_dirs(tmp_path / "state")] == ["step-30"]


def test_resume_after_a_crash_or_a_stop_equals_the_uninterrupted_run(chat_model, tmp_path):
    cfg = PpoConfig(
        steps=6,
        save_every=3,
        keep_last=2,
        lr=2e-3,
        kl_estimator="k3",
        whiten_rewards=True,
        reward_clip=0.9,
        adaptive_kl={"target": 1.0, "horizon": 40},
        spike={"min_history": 2},
        **TINY,
    )
    whole = make_loop(chat_model, tmp_path / "whole", cfg, noisy_letter_fraction)
    whole.train()
    expected_weights, expected_metrics = weights(whole), read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert [p.name for p in state_dirs(tmp_path / "whole" / "state")] == ["step-3", "step-6"]
    assert len({r["beta"] for r in expected_metrics}) > 1  # the adaptive controller moved β

    # crash after step 4: the step-6 state never got written; models reloaded from the initial checkpoint
    shutil.rmtree(tmp_path / "whole" / "state" / "step-6")
    again = make_loop(chat_model, tmp_path / "whole", cfg, noisy_letter_fraction)
    again.train()
    assert read_metrics(tmp_path / "whole" / "metrics.jsonl") == expected_metrics
    got = weights(again)
    assert all(torch.equal(got[k], expected_weights[k]) for k in expected_weights)

    # SIGTERM after step 4 (not a save step): a state is written, the run returns, a rerun finishes it
    class Stop:
        signum = None

    stop = Stop()

    def on_step(metrics: dict) -> None:
        if metrics["step"] == 4:
            stop.signum = 15

    first = make_loop(chat_model, tmp_path / "stopped", cfg, noisy_letter_fraction)
    assert first.train(stop, on_step) == {"stopped_at_step": 4}
    assert [p.name for p in state_dirs(tmp_path / "stopped" / "state")] == ["step-3", "step-4"]
    rest = make_loop(chat_model, tmp_path / "stopped", cfg, noisy_letter_fraction)
    assert rest.train()["steps_completed"] == 6
    assert read_metrics(tmp_path / "stopped" / "metrics.jsonl") == expected_metrics
    got = weights(rest)
    assert all(torch.equal(got[k], expected_weights[k]) for k in expected_weights)


def test_dropout_is_off_in_rollout_and_update(chat_model, tmp_path):
    from transformers import AutoConfig

    dropout_dir = tmp_path / "dropout"
    shutil.copytree(chat_model, dropout_dir)
    config = AutoConfig.from_pretrained(dropout_dir)
    config.attention_dropout = 0.5
    config.save_pretrained(dropout_dir)
    # one rollout, one minibatch, one epoch: the update's first forward must reproduce the rollout's
    # log-probs exactly, and policy and reference (same weights) must agree
    cfg = PpoConfig(
        steps=1, ppo_epochs=1, rollout_batch=8, minibatch_size=8, response_length=10, temperature=1.0
    )
    loop = make_loop(dropout_dir, tmp_path / "run", cfg, train_mode=True)
    loop.train()
    row = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert row["kl"] == 0.0
    assert row["approx_kl"] < 1e-10 and row["policy_clipfrac"] == 0.0
    models = (loop.models.policy, loop.models.ref, loop.models.value)
    assert not any(m.training for model in models for m in model.modules())

    # the dropout is real: the same model in train mode gives two different answers
    batch = loop.rollout(loop.next_batch())
    seq, am = batch.sequences, batch.attention_mask
    policy = loop.models.policy
    with torch.no_grad():
        twice = [loop._response_logits(policy, seq, am, batch.responses.shape[1]) for _ in range(2)]
        assert torch.equal(*twice)
        policy.train()
        noisy = [loop._response_logits(policy, seq, am, batch.responses.shape[1]) for _ in range(2)]
        policy.eval()
    assert not torch.allclose(*noisy)


def test_the_value_head_starts_at_zero(chat_model, tmp_path):
    value = value_model_from(chat_model)
    assert torch.count_nonzero(value.score.weight) == 0 and torch.count_nonzero(value.score.bias) == 0
    loop = make_loop(chat_model, tmp_path, PpoConfig(steps=1, **TINY))
    batch = loop.rollout(loop.next_batch())
    assert batch.values.shape == batch.responses.shape
    assert torch.count_nonzero(batch.values) == 0
    # with V = 0 the returns are the (un-whitened) GAE of the rewards alone, nonzero on reply tokens
    _, returns = pm.gae(batch.rewards, torch.zeros_like(batch.values), batch.response_mask, 1.0, 0.95)
    assert torch.equal(batch.returns, returns)
    assert torch.count_nonzero(batch.returns[batch.response_mask]) > 0
    assert (batch.returns[~batch.response_mask] == 0).all()
