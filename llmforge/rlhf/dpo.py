"""`rlhf dpo`: direct preference optimisation (Rafailov et al. 2023) of the SFT policy on chosen/rejected pairs
through trl's DPOTrainer — any loss trl offers, alone or weighted together, β, label smoothing, and reference
log-probabilities computed once up front (`precompute_ref_log_probs`: the reference model is then not kept in
memory during training, the common complaint about DPO).

Reported: the implicit reward β·log(π/π_ref) of chosen and rejected replies, its accuracy (chosen above
rejected) and margin on held-out pairs, and the policy's chosen-minus-rejected log-probability margin, before
training (eval at step 0) and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.console import UserError, quiet_hf_libraries
from llmforge.rlhf import trl_run
from llmforge.rlhf.common import (
    Outcome,
    check_policy,
    pair_row,
    require_chat_template,
    rlhf_config,
    seed_of,
    trl_args,
    use_bf16,
)

EVAL_KEYS = {
    "accuracy": "eval_rewards/accuracies",
    "margin": "eval_rewards/margins",
    "chosen_reward": "eval_rewards/chosen",
    "rejected_reward": "eval_rewards/rejected",
    "chosen_logp": "eval_logps/chosen",
    "rejected_logp": "eval_logps/rejected",
    "loss": "eval_loss",
}


def prepare(recipe: Any, *, fresh: bool) -> trl_run.TrlJob:
    cfg = rlhf_config(recipe)
    key = "rlhf.dpo.policy" if cfg.dpo.policy else "rlhf.policy"
    policy = cfg.dpo.policy or cfg.policy
    check_policy(policy, key, needs="DPO")
    from llmforge.rlhf.preferences import load_preferences

    data = load_preferences(cfg, seed_of(recipe))
    rows = {"train": [pair_row(p, cfg) for p in data.train], "val": [pair_row(p, cfg) for p in data.val]}
    for split in rows.values():
        for r in split:
            r.pop("margin", None)  # DPO has no margin term; the reward model uses it
    resume_key = {
        **cfg.dpo.model_dump(mode="json", exclude={"out", "keep_last"}),
        "policy": str(Path(policy).resolve()),
        "max_len": cfg.max_len,
        "pairs": trl_run.digest(rows["train"] + rows["val"]),
    }
    job = trl_run.start(recipe, "dpo", resume_key, [policy, *data.inputs], fresh=fresh)
    job.extra.update(policy=Path(policy), rows=rows, data=data)
    return job


def run_dpo(recipe: Any, *, fresh: bool = False) -> Outcome:
    job = prepare(recipe, fresh=fresh)
    quiet_hf_libraries()
    model, tokenizer = load_policy(job.extra["policy"], job)
    trainer = build_trainer(job, model, tokenizer)
    signum, seconds, peak = trl_run.train(job, trainer, "DPO")
    if signum:
        return Outcome({"stopped_at_step": trainer.state.global_step}, interrupted=signum)
    return Outcome(finish(job, trainer, tokenizer, seconds, peak))


def load_policy(policy: Path, job: trl_run.TrlJob) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    require_chat_template(tokenizer, job.cfg, policy)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"{policy}: model does not load ({e})") from None
    return model, tokenizer


def build_trainer(job: trl_run.TrlJob, model: Any, tokenizer: Any) -> Any:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    keys = job.keys
    args = DPOConfig(
        **trl_args(keys, job.trainer_dir, job.seed, use_bf16(job.cfg.precision), job.resume_from is not None),
        beta=keys.beta,
        loss_type=list(keys.loss_type),
        loss_weights=keys.loss_weights,
        label_smoothing=keys.label_smoothing,
        precompute_ref_log_probs=keys.precompute_ref_log_probs,
        max_length=job.cfg.max_len,
        disable_dropout=True,
    )
    trl_run.record_resume_key(job)
    rows = job.extra["rows"]
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows["train"]),
        eval_dataset=Dataset.from_list(rows["val"]),
        processing_class=tokenizer,
    )
    job.extra["kept"] = {"train": len(trainer.train_dataset), "val": len(trainer.eval_dataset)}
    return trainer


def evaluation(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(key) for name, key in EVAL_KEYS.items()}
    if out["chosen_logp"] is not None and out["rejected_logp"] is not None:
        out["logp_margin"] = out["chosen_logp"] - out["rejected_logp"]
    return out


def finish(job: trl_run.TrlJob, trainer: Any, tokenizer: Any, seconds: float, peak: int) -> dict[str, Any]:
    from llmforge.hf_trainer import last_logged

    rows = trl_run.history(job)
    evals = [r for r in rows if "eval_loss" in r]
    if not evals or evals[-1]["step"] != trainer.state.global_step:
        rows.append({"step": trainer.state.global_step, **trainer.evaluate()})
        evals.append(rows[-1])
    before, after = evaluation(evals[0]), evaluation(evals[-1])
    keys = job.keys
    stats = {
        "method": "dpo",
        "policy": str(job.extra["policy"].resolve()),
        "beta": keys.beta,
        "loss_type": list(keys.loss_type),
        "steps": trainer.state.global_step,
        "val_reward_accuracy": after["accuracy"],
        "val_reward_margin": after["margin"],
        "val_logp_margin": after.get("logp_margin"),
    }
    checkpoint = trl_run.write_policy_checkpoint(job, trainer.model, tokenizer, stats)
    data = job.extra["data"]
    results = {
        **stats,
        "before": before,
        "after": after,
        "precompute_ref_log_probs": keys.precompute_ref_log_probs,
        "pairs": trl_run.pair_counts(job),
        "data": data.stats,
        "seconds": seconds,
        "samples_per_s": last_logged(rows, "train_samples_per_second"),
        "train_runtime_s": last_logged(rows, "train_runtime"),
        "peak_memory": peak,
        "checkpoint": str(checkpoint),
    }
    plots = {
        "dpo.png": lambda png: trl_run.plot_curves(
            rows,
            {
                "loss": "train loss",
                "eval_loss": "val loss",
                "eval_rewards/margins": "val implicit-reward margin",
                "eval_rewards/accuracies": "val implicit-reward accuracy",
            },
            png,
            f"DPO ({', '.join(keys.loss_type)}, β = {keys.beta:g})",
            "loss · margin · accuracy",
        )
    }
    results["report"] = str(
        trl_run.write_report(job, results, rows, plots, ("val_reward_accuracy", "val_reward_margin", "steps"))
    )
    return results


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    before, after = results["before"], results["after"]

    def arrow(key: str, fmt: str = ".4f") -> str:
        b, a = before.get(key), after.get(key)
        return f"{b:{fmt}} → {a:{fmt}}" if b is not None and a is not None else "—"

    return {
        "loss / β": f"{', '.join(results['loss_type'])} / {results['beta']:g}",
        "steps": results["steps"],
        "val pairs": results["pairs"]["val_kept"],
        "val implicit-reward accuracy": arrow("accuracy", ".3f"),
        "val implicit-reward margin": arrow("margin"),
        "val log-prob margin (chosen − rejected)": arrow("logp_margin"),
        "val loss": arrow("loss"),
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
