"""RLHF speed: `llmforge rlhf reward / dpo / rloo / grpo` against bare trl (the same trl trainer configured by
hand) on the same model, data, steps and batch, in the same process; and our PPO loop's rollout and update
speed beside trl's RLOO on the same prompts. Issue #16's target: ours ≥ 0.95× bare trl's throughput for the
four trl-driven trainers; PPO (our own loop, no trl equivalent) is a comparison, not a pass/fail.

- Policy: a 4-layer d=128 llama with a 1000-token byte-level BPE trained on tinyshakespeare and the ChatML
  template installed (the tests' tiny policy, made bigger so a step is not all overhead). Data: the first ROWS
  pairs of Anthropic HH-RLHF harmless (`hh` format, chat-rendered), max_len 256; the online trainers' prompts
  are those pairs' conversations up to max_prompt_len 128 tokens; their reward is a function (the share of
  letters among a reply's characters: cheap, so the loop is what is timed).
- Ours: a recipe file run through the stage (`run_reward`, `run_dpo`, `run_online`): checks, load, trainer,
  progress, metrics.jsonl, final eval, checkpoint, report. Bare: the same policy loaded with transformers, the
  same rows (our preference / prompt loaders, outside the timed part, so both train on the same examples in
  the same order), a trl config written by hand with the same batch, LR schedule, steps, seed, fp32 and
  the same evaluation (trl's `eval_on_start` only; no eval and no save inside the loop on either side), no
  callbacks of ours. trl's defaults that differ from ours are set to ours: bf16 autocast and gradient
  checkpointing off (trl turns both on, also on CPU), dropout off, logging every step; trl's PrinterCallback
  (what `disable_tqdm` installs: a print of every log dict) is removed on both sides.
- Timing: a callback on both trainers notes the time of every optimizer step's end. Steady-state steps/s is
  (steps − 1) / (end of the last step − end of the first): model load, trl's data preparation, the evaluation
  before training and the first (warm-up) step are left out, while everything that runs per step on either
  side (our progress bar and metrics.jsonl, trl's logging) stays in. Samples/s = steps/s × batch (pairs for
  reward/DPO, completions for RLOO/GRPO). trl's own `train_samples_per_second` (the whole train() call, eval
  on start included) is reported beside it. Both sides see the same batches: their per-step losses agree,
  which the benchmark checks.
- Online trainers: trl's `_generate_and_score_completions` is timed on both sides (sampling, reward, reference
  log-probs, advantages) with the completion tokens it produced: rollout tokens/s, and the rest of the step
  (loss, backward, optimizer, logging) as update seconds. PPO reports the same two figures from its own
  metrics (`rollout_tokens_per_s`, `update_seconds`) with as many replies per step (rollout_batch = batch)
  and one gradient step per rollout (ppo_epochs 1, one minibatch), on the same prompts, reward and length.
- Rounds: every trainer's ours and bare alternate ROUNDS times (which goes first alternates too); medians of
  the rounds are reported, each round's figures beside them.
- torch runs one thread (THREADS): on a 2-core machine shared with other jobs, two intra-op threads made tiny
  matmuls several times slower and far noisier.

`BENCH_QUICK=1` runs fewer steps and one round (a smoke run, not a measurement).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HH = DATA / "hh_rlhf_harmless" / "test.jsonl"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = 1 if QUICK else 3
THREADS = 1
SEED = 0
MODEL = {"n_layers": 4, "d_model": 128, "n_heads": 4, "ffn_dim": 384, "vocab": 1000}
SIZES = {
    "rows": 200,  # HH pairs read; 5% held out
    "batch": 8,
    "reward_steps": 4 if QUICK else 20,
    "dpo_steps": 4 if QUICK else 12,  # a DPO step (policy and reference on 2 x 8 sequences) is the slowest
    "online_steps": 3 if QUICK else 16,  # RLOO and GRPO
    "ppo_steps": 3 if QUICK else 12,
    "num_generations": 4,
    "response_length": 24,
}
MAX_LEN = 256
MAX_PROMPT_LEN = 128
LR = 5e-4
PAIR_TRAINERS = ("reward", "dpo")
ONLINE_TRAINERS = ("rloo", "grpo")
REWARD_FN = "python:benchmarks.bench_rlhf:letter_share"


def letter_share(prompts: list, completions: list, **_: Any) -> list[float]:
    """The online reward: the share of letters among a reply's characters. Takes plain texts (ours passes
    them) or trl's conversational completions (lists of messages, what bare trl passes)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isalpha() for ch in t) / max(len(t), 1) for t in texts]


# ------------------------------------------------------------------------------------------------ setup


def build_policy(out: Path, *, n_layers: int, d_model: int, n_heads: int, ffn_dim: int, vocab: int) -> Path:
    """The tests' tiny llama dir (BPE on tinyshakespeare) at the given size, with the ChatML template and its
    role tokens installed and `<|im_end|>` as the end of a reply: a stand-in for an SFT checkpoint."""
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from eval_tiny_model import build_tiny_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmforge.generation.chat_template import BUILTIN, install

    base = build_tiny_model(
        out.parent / f"{out.name}-base", DATA / "tinyshakespeare" / "input.txt", vocab_size=vocab, context=512
    )
    config = LlamaConfig.from_pretrained(base)
    config.update(
        {
            "hidden_size": d_model,
            "intermediate_size": ffn_dim,
            "num_hidden_layers": n_layers,
            "num_attention_heads": n_heads,
            "num_key_value_heads": n_heads,
            "head_dim": d_model // n_heads,
        }
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    tokenizer = AutoTokenizer.from_pretrained(base)
    install(tokenizer, model, BUILTIN["chatml"])
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_recipe(path: Path, policy: Path, sizes: dict) -> Path:
    """One recipe for every trainer: no eval (and no trainer checkpoint) inside the loop, fp32, one seed."""
    import tomli_w

    batch = sizes["batch"]
    every_trainer = {"batch_size": batch, "lr": LR}
    online = {
        **every_trainer,
        "reward_fn": REWARD_FN,
        "max_steps": sizes["online_steps"],
        "eval_every": sizes["online_steps"] + 1000,
        "num_generations": sizes["num_generations"],
        "response_length": sizes["response_length"],
    }
    rlhf = {
        "policy": str(policy),
        "max_prompt_len": MAX_PROMPT_LEN,
        "max_len": MAX_LEN,
        "precision": "fp32",
        "val_fraction": 0.05,
        "preferences": [{"path": str(HH), "format": "hh", "max_rows": sizes["rows"]}],
        "reward": {
            **every_trainer,
            "max_steps": sizes["reward_steps"],
            "eval_every": sizes["reward_steps"] + 1000,
        },
        "dpo": {**every_trainer, "max_steps": sizes["dpo_steps"], "eval_every": sizes["dpo_steps"] + 1000},
        "rloo": online,
        "grpo": online,
        "ppo": {
            "reward_fn": REWARD_FN,
            "steps": sizes["ppo_steps"],
            "rollout_batch": batch,  # as many replies per step as RLOO's batch
            "minibatch_size": batch,  # one gradient step per rollout, as RLOO
            "ppo_epochs": 1,
            "response_length": sizes["response_length"],
            "lr": LR,
            "save_every": sizes["ppo_steps"],
            "val_prompts": 0,
        },
    }
    recipe = {"run": {"name": "bench", "out_dir": str(path.parent / "runs"), "seed": SEED}, "rlhf": rlhf}
    path.write_text(tomli_w.dumps(recipe))
    return path


# ------------------------------------------------------------------------------------------ measuring


class Probe:
    """What is timed on a trainer: the end of every optimizer step (a callback) and, for the online trainers,
    every training rollout (`_generate_and_score_completions`) with the completion tokens it made."""

    def __init__(self) -> None:
        self.step_ends: list[float] = []
        self.rollouts: list[tuple[float, int]] = []  # (seconds, completion tokens) per training rollout
        self.trainer: Any = None

    def attach(self, trainer: Any) -> Any:
        from transformers import PrinterCallback, TrainerCallback

        probe = self

        class StepEnds(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                probe.step_ends.append(time.perf_counter())

        trainer.remove_callback(PrinterCallback)  # ours removes it too, when it trains
        trainer.add_callback(StepEnds())
        if hasattr(trainer, "_generate_and_score_completions"):
            self._time_rollouts(trainer)
        self.trainer = trainer
        return trainer

    def _time_rollouts(self, trainer: Any) -> None:
        original = trainer._generate_and_score_completions

        def timed(inputs):
            started = time.perf_counter()
            out = original(inputs)
            if trainer.model.training:  # not the evaluation's rollouts
                tokens = int(out["completion_mask"].sum().item())
                self.rollouts.append((time.perf_counter() - started, tokens))
            return out

        trainer._generate_and_score_completions = timed


@contextlib.contextmanager
def probed(module: Any) -> Iterator[Probe]:
    """`module.build_trainer` (ours) wrapped so the trainer it builds carries a Probe."""
    probe = Probe()
    original = module.build_trainer

    def build(*args: Any, **kwargs: Any) -> Any:
        return probe.attach(original(*args, **kwargs))

    module.build_trainer = build
    try:
        yield probe
    finally:
        module.build_trainer = original


def measure(probe: Probe, wall_s: float) -> dict:
    """Steps, steady-state rates, trl's own rate, the per-step losses (and rewards) of one run."""
    trainer = probe.trainer
    args = trainer.args
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
    ends = probe.step_ends
    steady_s = ends[-1] - ends[0]
    steps_per_s = (len(ends) - 1) / steady_s
    history = trainer.state.log_history
    final = next(r for r in reversed(history) if "train_runtime" in r)
    logged = [r for r in history if "loss" in r]
    out = {
        "steps": trainer.state.global_step,
        "train_examples": len(trainer.train_dataset),
        "steady_steps": len(ends) - 1,
        "steady_s": steady_s,
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s * batch,
        "trl_samples_per_s": final["train_samples_per_second"],
        "train_runtime_s": final["train_runtime"],
        "train_wall_s": wall_s,
        "losses": [round(r["loss"], 6) for r in logged],
    }
    if probe.rollouts:
        out.update(rollout_figures(probe))
        out["rewards"] = [round(r["reward"], 6) for r in logged if "reward" in r]
    return out


def rollout_figures(probe: Probe) -> dict:
    """Online trainers: completion tokens/s of the steady steps and the medians of each step's rollout
    tokens/s and of the rest of its time (the update)."""
    ends, rollouts = probe.step_ends, probe.rollouts
    steady = rollouts[1 : len(ends)]  # rollout k runs inside the step that ends at ends[k]
    intervals = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "completion_tokens": sum(t for _, t in rollouts[: len(ends)]),
        "completion_tokens_per_s": sum(t for _, t in steady) / (ends[-1] - ends[0]),
        "rollout_tokens_per_s": statistics.median(t / s for s, t in steady),
        "update_s": statistics.median(i - s for i, (s, _) in zip(intervals, steady, strict=True)),
    }


# ------------------------------------------------------------------------------------------------- ours


def run_ours(kind: str, recipe_path: Path, out: Path) -> dict:
    """The stage itself, on a fresh output folder."""
    from llmforge.console import configure
    from llmforge.recipe import load_recipe
    from llmforge.rlhf import dpo, online, reward

    configure(quiet=True)
    recipe = load_recipe(recipe_path, [f"rlhf.out={str(out)!r}"])
    module = {"reward": reward, "dpo": dpo}.get(kind, online)
    with probed(module) as probe:
        started = time.perf_counter()
        if kind == "reward":
            results = reward.run_reward(recipe, fresh=True).results
        elif kind == "dpo":
            results = dpo.run_dpo(recipe, fresh=True).results
        else:
            results = online.run_online(recipe, kind, fresh=True).results
        stage_s = time.perf_counter() - started
    return measure(probe, results["seconds"]) | {"stage_wall_s": stage_s}


def run_ppo(recipe_path: Path, out: Path) -> dict:
    """Our PPO loop through its stage; per-step figures from its metrics (the first, warm-up step left out)."""
    from llmforge.console import configure
    from llmforge.recipe import load_recipe
    from llmforge.rlhf.ppo_run import run_ppo as ppo_stage

    configure(quiet=True)
    recipe = load_recipe(recipe_path, [f"rlhf.out={str(out)!r}"])
    started = time.perf_counter()
    results = ppo_stage(recipe, fresh=True).results
    stage_s = time.perf_counter() - started
    rows = [json.loads(x) for x in (Path(results["report"]) / "metrics.jsonl").read_text().splitlines()]
    steady = rows[1:] or rows
    return {
        "steps": results["steps"],
        "rollout_tokens_per_s": statistics.median(r["rollout_tokens_per_s"] for r in steady),
        "update_s": statistics.median(r["update_seconds"] for r in steady),
        "response_length": statistics.mean(r["response_length"] for r in rows),
        "stage_wall_s": stage_s,
    }


# ------------------------------------------------------------------------------------------------- bare


def run_bare(kind: str, recipe_path: Path, out: Path) -> dict:
    """trl as a user writes it: the same policy, rows and settings, none of our callbacks."""
    from llmforge.recipe import load_recipe

    cfg = load_recipe(recipe_path).table("rlhf")
    build = {"reward": bare_reward, "dpo": bare_dpo}.get(kind, bare_online)
    probe = Probe()
    trainer = probe.attach(build(cfg, kind, out))
    started = time.perf_counter()
    trainer.train()
    return measure(probe, time.perf_counter() - started)


def common_args(keys: Any, out: Path) -> dict:
    """The TrainingArguments fields every bare config sets by hand."""
    import torch

    return {
        "output_dir": str(out),
        "per_device_train_batch_size": keys.batch_size,
        "per_device_eval_batch_size": keys.batch_size,
        "learning_rate": keys.lr,
        "lr_scheduler_type": keys.lr_scheduler,
        "max_steps": keys.max_steps,
        "logging_steps": 1,
        "eval_strategy": "steps",  # ours evaluates the policy before training (eval_on_start), not again
        "eval_steps": keys.eval_every,
        "eval_on_start": True,
        "save_strategy": "no",
        "seed": SEED,
        "data_seed": SEED,
        "bf16": False,  # trl's configs default to bf16 autocast and activation checkpointing, even on CPU
        "activation_checkpointing": False,
        "use_cpu": not torch.cuda.is_available(),
        "report_to": "none",
        "disable_tqdm": True,
    }


def pair_rows(cfg: Any, *, with_prompt: bool) -> dict[str, list[dict]]:
    from llmforge.rlhf.common import pair_row
    from llmforge.rlhf.preferences import load_preferences

    data = load_preferences(cfg, SEED)
    return {
        split: [pair_row(p, cfg, with_prompt=with_prompt) for p in pairs]
        for split, pairs in (("train", data.train), ("val", data.val))
    }


def bare_reward(cfg: Any, kind: str, out: Path) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(cfg.policy)
    torch.manual_seed(SEED)  # the score head's initialisation, as ours
    model = AutoModelForSequenceClassification.from_pretrained(cfg.policy, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = pair_rows(cfg, with_prompt=False)
    args = RewardConfig(**common_args(cfg.reward, out), max_length=cfg.max_len, disable_dropout=True)
    return pair_trainer(RewardTrainer, model, args, rows, tokenizer)


def bare_dpo(cfg: Any, kind: str, out: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(cfg.policy)
    model = AutoModelForCausalLM.from_pretrained(cfg.policy, dtype=torch.float32)
    rows = pair_rows(cfg, with_prompt=True)
    args = DPOConfig(
        **common_args(cfg.dpo, out),
        beta=cfg.dpo.beta,
        loss_type=list(cfg.dpo.loss_type),
        max_length=cfg.max_len,
        disable_dropout=True,
    )
    return pair_trainer(DPOTrainer, model, args, rows, tokenizer)


def pair_trainer(trainer: Any, model: Any, args: Any, rows: dict[str, list], tokenizer: Any) -> Any:
    from datasets import Dataset

    return trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows["train"]),
        eval_dataset=Dataset.from_list(rows["val"]),
        processing_class=tokenizer,
    )


def bare_online(cfg: Any, kind: str, out: Path) -> Any:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.rlhf.prompts import load_prompt_set
    from llmforge.rlhf.render import render

    keys = getattr(cfg, kind)
    tokenizer = AutoTokenizer.from_pretrained(cfg.policy)
    model = AutoModelForCausalLM.from_pretrained(cfg.policy, dtype=torch.float32)
    prompts = load_prompt_set(cfg, SEED)
    train, val = (
        Dataset.from_list([{"prompt": m} for m in render(tokenizer, rows, cfg, split).messages])
        for split, rows in (("train", prompts.train), ("val", prompts.val))
    )
    settings = {
        **common_args(keys, out),
        "num_generations": keys.num_generations,
        "beta": keys.beta,
        "max_completion_length": keys.response_length,
        "temperature": keys.temperature,
        "disable_dropout": True,
    }
    if kind == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        args, trainer_class = RLOOConfig(**settings), RLOOTrainer
    else:
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(**settings, loss_type=keys.loss_type, scale_rewards=keys.scale_rewards)
        trainer_class = GRPOTrainer
    return trainer_class(
        model=model,
        reward_funcs=letter_share,
        args=args,
        train_dataset=train,
        eval_dataset=val,
        processing_class=tokenizer,
    )


# ------------------------------------------------------------------------------------------ comparisons

RATE_KEYS = ("steps_per_s", "samples_per_s", "trl_samples_per_s", "train_runtime_s", "train_wall_s")
ONLINE_KEYS = ("completion_tokens_per_s", "rollout_tokens_per_s", "update_s")


def compare(kind: str, root: Path, recipe: Path, *, rounds: int) -> dict:
    """Ours and bare trl alternately `rounds` times (the first to run alternates); medians, ratios ours / bare
    and whether both trained the same steps on the same examples."""
    runs: dict[str, list[dict]] = {"ours": [], "bare": []}
    for i in range(rounds):
        order = ("ours", "bare") if i % 2 == 0 else ("bare", "ours")
        for side in order:
            run = run_ours if side == "ours" else run_bare
            runs[side].append(run(kind, recipe, root / f"{kind}-{side}-{i}"))
    med = {side: medians(r) for side, r in runs.items()}
    first_ours, first_bare = runs["ours"][0], runs["bare"][0]
    every = runs["ours"] + runs["bare"]
    out = {
        **med,
        "ratio_samples_per_s": med["ours"]["samples_per_s"] / med["bare"]["samples_per_s"],
        "ratio_trl_samples_per_s": med["ours"]["trl_samples_per_s"] / med["bare"]["trl_samples_per_s"],
        "ratio_train_wall": med["bare"]["train_wall_s"] / med["ours"]["train_wall_s"],
        "same_steps": all(r["steps"] == first_bare["steps"] for r in every),
        "same_examples": all(r["train_examples"] == first_bare["train_examples"] for r in every),
        "max_loss_diff": max_diff(first_ours["losses"], first_bare["losses"]),
        "rounds": {side: [round_summary(r) for r in rs] for side, rs in runs.items()},
    }
    if "rewards" in first_bare:
        out["max_reward_diff"] = max_diff(first_ours["rewards"], first_bare["rewards"])
    out["meets_target"] = out["ratio_samples_per_s"] >= TARGET
    return out


TARGET = 0.95


def max_diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return float("inf")
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


def medians(runs: list[dict]) -> dict:
    keys = [k for k in (*RATE_KEYS, *ONLINE_KEYS, "stage_wall_s") if k in runs[0]]
    fixed = {k: runs[0][k] for k in ("steps", "train_examples", "steady_steps")}
    return fixed | {k: statistics.median(r[k] for r in runs) for k in keys}


def round_summary(run: dict) -> dict:
    return {k: round(run[k], 4) for k in (*RATE_KEYS, *ONLINE_KEYS) if k in run}


def ppo_vs_rloo(root: Path, recipe: Path, rloo: dict, *, rounds: int) -> dict:
    """Our PPO loop's rollout tokens/s and update seconds per step beside trl RLOO's (bare, from `rloo`)."""
    runs = [run_ppo(recipe, root / f"ppo-{i}") for i in range(rounds)]
    ppo = {"steps": runs[0]["steps"]} | {
        k: statistics.median(r[k] for r in runs)
        for k in ("rollout_tokens_per_s", "update_s", "response_length", "stage_wall_s")
    }
    bare = rloo["bare"]
    return {
        "ppo": ppo,
        "rloo_trl": {k: bare[k] for k in ("steps", "rollout_tokens_per_s", "update_s")},
        "ppo_over_rloo_rollout_tokens_per_s": ppo["rollout_tokens_per_s"] / bare["rollout_tokens_per_s"],
        "ppo_over_rloo_update_s": ppo["update_s"] / bare["update_s"],
        "rounds": [{k: round(r[k], 4) for k in ("rollout_tokens_per_s", "update_s")} for r in runs],
    }


def benchmark(root: Path, policy: Path, sizes: dict, *, rounds: int) -> dict:
    """Every trainer's comparison and the PPO figures, on one policy and recipe."""
    recipe = write_recipe(root / "recipe.toml", policy, sizes)
    trainers = {
        kind: compare(kind, root, recipe, rounds=rounds) for kind in (*PAIR_TRAINERS, *ONLINE_TRAINERS)
    }
    ppo = ppo_vs_rloo(root, recipe, trainers["rloo"], rounds=rounds)
    return {
        "trainers": trainers,
        "ppo_vs_rloo": ppo,
        "ratios": {kind: r["ratio_samples_per_s"] for kind, r in trainers.items()},
        "all_meet_target": all(r["meets_target"] for r in trainers.values()),
    }


def run() -> dict:
    import torch

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory(prefix="bench-rlhf-") as tmp:
        root = Path(tmp)
        policy = build_policy(root / "policy", **MODEL)
        result = benchmark(root, policy, SIZES, rounds=ROUNDS)
    return {
        "quick": QUICK,
        "torch_threads": torch.get_num_threads(),
        "model": MODEL,
        "data": f"hh_rlhf_harmless/test.jsonl, first {SIZES['rows']} pairs (hh, chatml), max_len {MAX_LEN}, "
        f"prompts up to {MAX_PROMPT_LEN} tokens; online reward: {REWARD_FN}",
        "sizes": SIZES,
        "rounds": ROUNDS,
        "precision": "fp32",
        **result,
        "target_ratio": TARGET,
        "measure": "samples/s of the steady steps (2..N, end to end) inside trainer.train(); medians of "
        "interleaved rounds",
        "note": "2-core machine shared with other jobs: absolute rates are noisy",
    }
