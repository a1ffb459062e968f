"""`rlhf ppo`: the checks, loading and outputs around the PPO loop (llmforge/rlhf/ppo.py).

Layout under `rlhf.ppo.out` (default `<rlhf.out>/ppo`):
  state/step-N/        the loop's resumable state (policy, value model, optimizers, KL controller, RNG, data
                       position); state/run.json holds what the run trains on, state/metrics.jsonl its steps
  checkpoint/          the aligned policy (`checkpoint` artifact)
  report/              results.json, metrics.jsonl, ppo.png (`report` artifact)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.console import UserError, info, progress, quiet_hf_libraries, rate_text
from llmforge.rlhf import scoring
from llmforge.rlhf.common import (
    CHECKPOINT_DIR,
    REPORT_DIR,
    Outcome,
    check_policy,
    require_chat_template,
    rlhf_config,
    seed_of,
    trainer_out,
)
from llmforge.rlhf.trl_run import digest, plot_panels

STATE_DIR = "state"
RUN_FILE = "run.json"


@dataclass
class PpoJob:
    recipe: Any
    out: Path
    policy: Path
    spec: scoring.RewardSpec
    prompts: Any  # PromptSet
    seed: int
    resume_key: dict[str, Any]

    @property
    def cfg(self) -> Any:
        return rlhf_config(self.recipe).ppo

    @property
    def state_dir(self) -> Path:
        return self.out / STATE_DIR


def prepare(recipe: Any, *, fresh: bool) -> PpoJob:
    """Every check before a weight loads: the policy, the reward (a reward-model artifact with the policy's
    tokenizer, or an importable function), the prompts, the output folder, and whether the run resumes."""
    cfg = rlhf_config(recipe)
    key = "rlhf.ppo.policy" if cfg.ppo.policy else "rlhf.policy"
    policy = Path(cfg.ppo.policy or cfg.policy)
    check_policy(policy, key, needs="PPO")
    spec = scoring.resolve(cfg.ppo, recipe, "rlhf.ppo", policy, same_tokenizer=True)
    from llmforge.rlhf.prompts import load_prompt_set

    seed = seed_of(recipe)
    prompts = load_prompt_set(cfg, seed)
    out = trainer_out(recipe, "ppo")
    ensure_writable(out)
    resume_key = {
        **cfg.ppo.model_dump(mode="json", exclude={"out", "keep_last", "steps", "save_every"}),
        "policy": str(policy.resolve()),
        "reward": spec.name,
        "prompts": digest([r.messages for r in prompts.train]),
        "seed": seed,
        "system_prompt": cfg.system_prompt,
        "max_prompt_len": cfg.max_prompt_len,
    }
    job = PpoJob(recipe, out, policy, spec, prompts, seed, resume_key)
    if fresh:
        for sub in (STATE_DIR, CHECKPOINT_DIR, REPORT_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    else:
        check_resumable(job)
    return job


def check_resumable(job: PpoJob) -> None:
    final = job.out / CHECKPOINT_DIR
    if (final / "manifest.json").is_file() and not job.state_dir.is_dir():
        raise UserError(
            f"{final}: this PPO run already finished; pass --fresh to train again (it replaces the result) or "
            "set rlhf.ppo.out to another folder"
        )
    run_file = job.state_dir / RUN_FILE
    if not run_file.is_file():
        return
    recorded = json.loads(run_file.read_text()).get("resume_key", {})
    changed = sorted(k for k in {*recorded, *job.resume_key} if recorded.get(k) != job.resume_key.get(k))
    if changed:
        raise UserError(
            f"{job.state_dir}: its state was trained with other {', '.join(changed)}; pass --fresh to start "
            "over, or set rlhf.ppo.out to another folder"
        )


def run_ppo(recipe: Any, *, fresh: bool = False) -> Outcome:
    job = prepare(recipe, fresh=fresh)
    quiet_hf_libraries()
    from accelerate import Accelerator

    from llmforge.rlhf.ppo import PpoLoop
    from llmforge.rlhf.render import render
    from llmforge.stop_signal import StopSignal

    tokenizer, models = load_models(job)
    rendered = render(tokenizer, job.prompts.train, rlhf_config(recipe), "train")
    held_out = job.prompts.val[: job.cfg.val_prompts]
    val = render(tokenizer, held_out, rlhf_config(recipe), "val") if held_out else None
    plain = {t: p for r in (rendered, val) if r for t, p in zip(r.texts, r.plain, strict=True)}
    accelerator = Accelerator(cpu=not _has_gpu())
    scorer = scoring.ppo_scorer(job.spec, accelerator.device)
    stops = stop_ids(job.policy, tokenizer)
    if job.spec.kind == "model" and rlhf_config(recipe).chat_template:
        scorer = with_template_tail(scorer, template_tail(tokenizer, stops), stops)
    scorer = with_plain_prompts(scorer, plain)
    job.state_dir.mkdir(parents=True, exist_ok=True)
    write_json(job.state_dir / RUN_FILE, {"resume_key": job.resume_key})
    loop = PpoLoop(
        job.cfg,
        models,
        tokenizer,
        scorer,
        rendered.texts,
        [dict(r.columns) for r in rendered.rows],
        stop_ids=stops,
        seed=job.seed,
        state_dir=job.state_dir,
        metrics_path=job.state_dir / "metrics.jsonl",
        accelerator=accelerator,
    )
    started = time.perf_counter()
    with StopSignal() as stop, progress() as bar:
        task = bar.add_task("PPO", total=job.cfg.steps, rate="")
        first: list[int] = []

        def on_step(metrics: dict[str, Any]) -> None:
            first.append(metrics["step"])
            bar.update(
                task,
                completed=metrics["step"],
                rate=rate_text(len(first), time.perf_counter() - started, "steps"),
            )
            info(
                f"step {metrics['step']}: score {metrics['score']:.4f}, kl {metrics['kl']:.4f}, "
                f"β {metrics['beta']:.4f}, reply {metrics['response_length']:.1f} tokens"
            )

        summary = loop.train(stop, on_step)
    if "stopped_at_step" in summary:
        info(
            f"[yellow]stopped[/] at step {summary['stopped_at_step']} (state saved); run the same command to resume"
        )
        return Outcome(summary, interrupted=stop.signum or 15)
    val_scores = held_out_scores(loop, val, job.seed)
    return Outcome(
        finish(job, models, tokenizer, rendered, summary, val_scores, time.perf_counter() - started)
    )


def held_out_scores(loop: Any, val: Any, seed: int) -> dict[str, float | None]:
    """The mean score on the held-out prompts of the initial policy (the frozen reference is a copy of it)
    and of the trained one, same prompts and sampling seed."""
    if val is None:
        return {"val_reward_before": None, "val_reward_after": None}
    columns = [dict(r.columns) for r in val.rows]
    return {
        "val_reward_before": loop.mean_score(loop.models.ref, val.texts, columns, seed),
        "val_reward_after": loop.mean_score(loop.models.policy, val.texts, columns, seed),
    }


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def load_models(job: PpoJob) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.rlhf.ppo import PpoModels, value_model_from

    tokenizer = AutoTokenizer.from_pretrained(job.policy)
    require_chat_template(tokenizer, rlhf_config(job.recipe), job.policy)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        policy = AutoModelForCausalLM.from_pretrained(job.policy, dtype=torch.float32)
        ref = AutoModelForCausalLM.from_pretrained(job.policy, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"{job.policy}: model does not load ({e})") from None
    ref.eval()
    ref.requires_grad_(False)
    return tokenizer, PpoModels(policy=policy, ref=ref, value=value_model_from(job.policy))


def stop_ids(policy: Path, tokenizer: Any) -> list[int]:
    """The ids that end a reply: the checkpoint's generation_config eos ids (the chat template's end of turn,
    written by `finetune sft`), else the tokenizer's EOS."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(policy).eos_token_id
    except OSError:
        eos = None
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return ids or [tokenizer.eos_token_id]


def template_tail(tokenizer: Any, stops: list[int]) -> list[int]:
    """The ids the chat template writes after a reply's end-of-turn token (ChatML-like templates: a newline).

    The reward model was trained on whole rendered conversations, so its score was read at the last token of
    this tail; a PPO reply ends at the end-of-turn token, and scoring it there would read the head one position
    early, on a context it never saw in training."""
    probe = [{"role": "user", "content": "x"}]
    prompt = tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template([*probe, {"role": "assistant", "content": "y"}], tokenize=False)
    if not full.startswith(prompt):
        return []
    ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ends = [i for i, t in enumerate(ids) if t in stops]
    return ids[ends[-1] + 1 :] if ends else []


def with_template_tail(scorer: Any, tail: list[int], stops: list[int]) -> Any:
    """Score each reply that ended with a stop token as the template renders it: the tail appended."""
    if not tail:
        return scorer
    import torch

    def score(sequences, attention_mask, prompts, completions, columns):
        rows, width = sequences.shape
        pad = torch.zeros((rows, len(tail)), dtype=sequences.dtype, device=sequences.device)
        seq = torch.cat([sequences, pad], dim=1)
        mask = torch.cat([attention_mask, torch.zeros_like(pad)], dim=1)
        last = width - 1 - attention_mask.flip(1).argmax(1)  # the last attended position of each row
        extra = torch.tensor(tail, dtype=sequences.dtype, device=sequences.device)
        for row in range(rows):
            end = int(last[row])
            if int(sequences[row, end]) in stops:
                seq[row, end + 1 : end + 1 + len(tail)] = extra
                mask[row, end + 1 : end + 1 + len(tail)] = 1
        return scorer(seq, mask, prompts, completions, columns)

    return score


def with_plain_prompts(scorer: Any, plain: dict[str, str]) -> Any:
    """Reward functions read the user's turn, not the rendered template: map each rendered prompt back."""

    def score(sequences, attention_mask, prompts, completions, columns):
        return scorer(sequences, attention_mask, [plain.get(p, p) for p in prompts], completions, columns)

    return score


def finish(
    job: PpoJob,
    models: Any,
    tokenizer: Any,
    rendered: Any,
    summary: dict,
    val_scores: dict,
    seconds: float,
) -> dict[str, Any]:
    from llmforge.hf_trainer import read_history

    rows = read_history(job.state_dir / "metrics.jsonl")
    stats = {
        "method": "ppo",
        "policy": str(job.policy.resolve()),
        "reward": job.spec.name,
        "steps": rows[-1]["step"] if rows else 0,
        "first_score": _mean(rows[: max(1, len(rows) // 5)], "score"),
        "last_score": _mean(rows[-max(1, len(rows) // 5) :], "score"),
        "last_kl": _mean(rows[-max(1, len(rows) // 5) :], "kl"),
        **val_scores,
    }
    checkpoint = job.out / CHECKPOINT_DIR
    with atomic_dir(checkpoint) as tmp:
        models.policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        models.policy.generation_config.save_pretrained(tmp)
        inputs = [job.policy, *job.prompts.inputs, *([job.spec.model] if job.spec.model else [])]
        write_manifest(
            tmp, "checkpoint", recipe=job.recipe.to_dict(), inputs=inputs, stats={**stats, "variant": "full"}
        )
    results = {
        **stats,
        **{k: v for k, v in summary.items() if k not in stats},
        "prompts": {"train": len(rendered.rows), "too_long": rendered.too_long},
        "seconds": seconds,
        "checkpoint": str(checkpoint),
    }
    report = job.out / REPORT_DIR
    with atomic_dir(report) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        plot_panels(rows, PANELS, tmp / "ppo.png", "PPO")
        write_manifest(tmp, "report", recipe=job.recipe.to_dict(), inputs=[checkpoint], stats=stats)
    shutil.rmtree(job.state_dir, ignore_errors=True)
    results["report"] = str(report)
    return results


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


PANELS = (
    ("score", "reward-model / function score"),
    ("kl", "KL to the reference (nats/reply)"),
    ("response_length", "reply tokens"),
    ("entropy", "entropy (nats/token)"),
    ("policy_clipfrac", "policy clip fraction"),
    ("value_clipfrac", "value clip fraction"),
)


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.4f}"

    return {
        "reward": results["reward"],
        "steps": results["steps"],
        "mean score (first → last fifth of steps)": f"{fmt(results['first_score'])} → {fmt(results['last_score'])}",
        "KL to the reference (last fifth)": fmt(results["last_kl"]),
        "val mean score (before → after)": f"{fmt(results['val_reward_before'])} → {fmt(results['val_reward_after'])}",
        "prompts (train / too long)": f"{results['prompts']['train']} / {results['prompts']['too_long']}",
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
