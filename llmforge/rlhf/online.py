"""`rlhf rloo` / `rlhf grpo`: the online loop (sample replies → score them → update) through trl's RLOOTrainer
(REINFORCE leave-one-out, Ahmadian et al. 2024) and GRPOTrainer (group-relative policy optimisation, Shao et al.
2024), on the same prompts and reward as `rlhf ppo`, with the same kind of report, so the three can be compared
on one's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.console import quiet_hf_libraries
from llmforge.rlhf import scoring, trl_run
from llmforge.rlhf.common import Outcome, check_policy, rlhf_config, seed_of, trl_args, use_bf16

METRIC_KEYS = {  # ours → trl's logged key (the same names in RLOO and GRPO)
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "entropy": "entropy",
    "response_length": "completions/mean_length",
    "clipped_fraction": "completions/clipped_ratio",
}


def prepare(recipe: Any, algo: str, *, fresh: bool) -> trl_run.TrlJob:
    cfg = rlhf_config(recipe)
    keys = getattr(cfg, algo)
    key = f"rlhf.{algo}.policy" if keys.policy else "rlhf.policy"
    policy = keys.policy or cfg.policy
    check_policy(policy, key, needs=algo.upper())
    spec = scoring.resolve(keys, recipe, f"rlhf.{algo}", policy, same_tokenizer=False)
    from llmforge.rlhf.prompts import load_prompt_set

    prompts = load_prompt_set(cfg, seed_of(recipe))
    resume_key = {
        **keys.model_dump(mode="json", exclude={"out", "keep_last"}),
        "policy": str(Path(policy).resolve()),
        "reward": spec.name,
        "prompts": trl_run.digest([r.messages for r in prompts.train + prompts.val]),
    }
    inputs = [policy, *prompts.inputs, *([spec.model] if spec.model else [])]
    job = trl_run.start(recipe, algo, resume_key, inputs, fresh=fresh)
    job.extra.update(policy=Path(policy), spec=spec, prompts=prompts)
    return job


def run_online(recipe: Any, algo: str, *, fresh: bool = False) -> Outcome:
    job = prepare(recipe, algo, fresh=fresh)
    quiet_hf_libraries()
    from llmforge.rlhf.dpo import load_policy

    model, tokenizer = load_policy(job.extra["policy"], job)
    trainer = build_trainer(job, algo, model, tokenizer)
    signum, seconds, peak = trl_run.train(job, trainer, algo.upper())
    if signum:
        return Outcome({"stopped_at_step": trainer.state.global_step}, interrupted=signum)
    return Outcome(finish(job, algo, trainer, tokenizer, seconds, peak))


def dataset_rows(tokenizer: Any, rows: list[Any], cfg: Any, split: str) -> tuple[list[dict], int]:
    from llmforge.rlhf.render import render

    rendered = render(tokenizer, rows, cfg, split)
    return [
        {"prompt": p, **row.columns} for p, row in zip(rendered.messages, rendered.rows, strict=True)
    ], rendered.too_long


def build_trainer(job: trl_run.TrlJob, algo: str, model: Any, tokenizer: Any) -> Any:
    from datasets import Dataset

    keys = job.keys
    prompts = job.extra["prompts"]
    train, too_long = dataset_rows(tokenizer, prompts.train, job.cfg, "train")
    val, _ = dataset_rows(tokenizer, prompts.val, job.cfg, "val")
    job.extra.update(prompt_rows={"train": len(train), "val": len(val)}, too_long=too_long)
    common = {
        **trl_args(keys, job.trainer_dir, job.seed, use_bf16(job.cfg.precision), job.resume_from is not None),
        "num_generations": keys.num_generations,
        "beta": keys.beta,
        "max_completion_length": keys.response_length,
        "temperature": keys.temperature,
        "mask_truncated_completions": keys.mask_truncated_completions,
        "disable_dropout": True,
    }
    common.pop("dataset_num_proc")  # the online trainers take prompts as they are
    if algo == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

        args = Config(**common, normalize_advantages=keys.normalize_advantages)
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer

        args = Config(**common, loss_type=keys.loss_type, scale_rewards=keys.scale_rewards)
    trl_run.record_resume_key(job)
    return Trainer(
        model=model,
        reward_funcs=scoring.trl_reward(job.extra["spec"]),
        args=args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(val),
        processing_class=tokenizer,
    )


def per_step(rows: list[dict]) -> list[dict]:
    """Our metric names per logged training step (trl's keys renamed; steps without them skipped)."""
    out = []
    for r in rows:
        if "reward" in r:
            out.append({"step": r["step"], **{k: r.get(v) for k, v in METRIC_KEYS.items()}})
    return out


def finish(
    job: trl_run.TrlJob, algo: str, trainer: Any, tokenizer: Any, seconds: float, peak: int
) -> dict[str, Any]:
    from llmforge.hf_trainer import last_logged

    rows = trl_run.history(job)
    steps = per_step(rows)
    keys = job.keys
    head, tail = steps[: max(1, len(steps) // 5)], steps[-max(1, len(steps) // 5) :]

    def mean(part: list[dict], key: str) -> float | None:
        values = [r[key] for r in part if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    evals = [r for r in rows if "eval_reward" in r]
    if not evals or evals[-1]["step"] != trainer.state.global_step:
        rows.append({"step": trainer.state.global_step, **trainer.evaluate()})
        evals.append(rows[-1])
    stats = {
        "method": algo,
        "policy": str(job.extra["policy"].resolve()),
        "reward": job.extra["spec"].name,
        "steps": trainer.state.global_step,
        "first_reward": mean(head, "reward"),
        "last_reward": mean(tail, "reward"),
        "last_kl": mean(tail, "kl"),
        "val_reward_before": evals[0].get("eval_reward"),
        "val_reward_after": evals[-1].get("eval_reward"),
    }
    checkpoint = trl_run.write_policy_checkpoint(job, trainer.model, tokenizer, stats)
    results = {
        **stats,
        "num_generations": keys.num_generations,
        "beta": keys.beta,
        "prompts": {**job.extra["prompt_rows"], "too_long": job.extra["too_long"]},
        "per_step": steps,
        "seconds": seconds,
        "train_runtime_s": last_logged(rows, "train_runtime"),
        "steps_per_s": last_logged(rows, "train_steps_per_second"),
        "peak_memory": peak,
        "checkpoint": str(checkpoint),
    }
    plots = {f"{algo}.png": lambda png: trl_run.plot_panels(steps, ONLINE_PANELS, png, algo.upper())}
    results["report"] = str(
        trl_run.write_report(job, results, rows, plots, ("first_reward", "last_reward", "steps"))
    )
    return results


ONLINE_PANELS = (
    ("reward", "mean reward"),
    ("kl", "KL to the reference"),
    ("response_length", "reply tokens"),
)


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.4f}"

    return {
        "method": results["method"],
        "reward": results["reward"],
        "steps": results["steps"],
        "mean reward (first → last fifth of steps)": f"{fmt(results['first_reward'])} → {fmt(results['last_reward'])}",
        "KL to the reference (last fifth)": fmt(results["last_kl"]),
        "val mean reward (before → after)": f"{fmt(results['val_reward_before'])} → {fmt(results['val_reward_after'])}",
        "prompts (train / too long)": f"{results['prompts']['train']} / {results['prompts']['too_long']}",
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
