"""`rlhf reward`: a reward model — the SFT model with a scalar sequence-classification head — trained on
chosen/rejected pairs with trl's RewardTrainer (Bradley–Terry loss, optional margin column and reward centering).

The result is a `checkpoint` artifact whose manifest says `model_kind = "reward_model"`. The score head is the
part a save can lose (peft without `modules_to_save=["score"]`, a head left at its random init): the saved
checkpoint is loaded back and must score the held-out pairs as the trained model did, or the run fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, write_manifest
from llmforge.console import UserError, quiet_hf_libraries
from llmforge.rlhf import trl_run
from llmforge.rlhf.common import (
    REWARD_MODEL_KIND,
    Outcome,
    check_policy,
    pair_row,
    require_chat_template,
    rlhf_config,
    seed_of,
    trl_args,
    use_bf16,
)

SAVE_TOLERANCE = 1e-4  # max |score(saved) − score(trained)| on held-out pairs


def prepare(recipe: Any, *, fresh: bool) -> tuple[trl_run.TrlJob, Any]:
    cfg = rlhf_config(recipe)
    key = "rlhf.reward.base" if cfg.reward.base else "rlhf.policy"
    base = cfg.reward.base or cfg.policy
    check_policy(base, key, needs="a reward model")
    from llmforge.rlhf.preferences import load_preferences

    data = load_preferences(cfg, seed_of(recipe))
    rows = {
        "train": [pair_row(p, cfg, with_prompt=False) for p in data.train],
        "val": [pair_row(p, cfg, with_prompt=False) for p in data.val],
    }
    if any("margin" in r for r in rows["train"] + rows["val"]):
        for r in rows["train"] + rows["val"]:
            r.setdefault("margin", 0.0)  # a column for every row once one source gives margins
    resume_key = {
        **cfg.reward.model_dump(mode="json", exclude={"out", "keep_last", "calibration_bins"}),
        "base": str(Path(base).resolve()),
        "max_len": cfg.max_len,
        "pairs": trl_run.digest(rows["train"] + rows["val"]),
    }
    job = trl_run.start(recipe, "reward", resume_key, [base, *data.inputs], fresh=fresh)
    job.extra.update(base=Path(base), rows=rows, data=data)
    return job, cfg


def run_reward(recipe: Any, *, fresh: bool = False) -> Outcome:
    job, cfg = prepare(recipe, fresh=fresh)
    quiet_hf_libraries()
    model, tokenizer = load(job)
    trainer = build_trainer(job, model, tokenizer)
    signum, seconds, peak = trl_run.train(job, trainer, "reward model")
    if signum:
        return Outcome({"stopped_at_step": trainer.state.global_step}, interrupted=signum)
    return Outcome(finish(job, trainer, tokenizer, seconds, peak))


def load(job: trl_run.TrlJob) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = job.extra["base"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    require_chat_template(tokenizer, job.cfg, base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(job.seed)  # the score head's initialisation
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"{base}: does not load as a sequence classifier ({e})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def build_trainer(job: trl_run.TrlJob, model: Any, tokenizer: Any) -> Any:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    keys = job.keys
    args = RewardConfig(
        **trl_args(keys, job.trainer_dir, job.seed, use_bf16(job.cfg.precision), job.resume_from is not None),
        max_length=job.cfg.max_len,
        center_rewards_coefficient=keys.center_rewards_coefficient,
        disable_dropout=True,
    )
    trl_run.record_resume_key(job)
    rows = job.extra["rows"]
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows["train"]),
        eval_dataset=Dataset.from_list(rows["val"]),
        processing_class=tokenizer,
    )
    check_kept(job, trainer, rows)
    return trainer


def check_kept(job: trl_run.TrlJob, trainer: Any, rows: dict) -> None:
    """trl drops pairs longer than max_length: count them, and refuse a split left empty."""
    kept = {"train": len(trainer.train_dataset), "val": len(trainer.eval_dataset)}
    for split, n in kept.items():
        if not n:
            raise UserError(
                f"rlhf.max_len = {job.cfg.max_len}: none of the {len(rows[split])} {split} pairs fits (prompt + "
                "reply, in tokens); raise rlhf.max_len"
            )
    job.extra["kept"] = kept


def score_pairs(model: Any, tokenizer: Any, dataset: Any, batch_size: int) -> tuple[Any, Any]:
    """Rewards of the chosen and the rejected sequence of each prepared pair (trl's `chosen_ids`/`rejected_ids`)."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {"chosen_ids": [], "rejected_ids": []}
    with torch.no_grad():
        for column in scores:
            seqs = dataset[column]
            for i in range(0, len(seqs), batch_size):
                batch = tokenizer.pad({"input_ids": seqs[i : i + batch_size]}, return_tensors="pt")
                out = model(
                    input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
                )
                scores[column].extend(out.logits[:, 0].float().cpu().tolist())
    model.train(was_training)
    return np.array(scores["chosen_ids"]), np.array(scores["rejected_ids"])


def finish(job: trl_run.TrlJob, trainer: Any, tokenizer: Any, seconds: float, peak: int) -> dict[str, Any]:
    from llmforge.hf_trainer import last_logged
    from llmforge.rlhf.reward_metrics import pairwise_metrics, plot_calibration

    keys = job.keys
    chosen, rejected = score_pairs(trainer.model, tokenizer, trainer.eval_dataset, keys.batch_size)
    val = pairwise_metrics(chosen, rejected, keys.calibration_bins)
    tr_chosen, tr_rejected = score_pairs(trainer.model, tokenizer, trainer.train_dataset, keys.batch_size)
    train = pairwise_metrics(tr_chosen, tr_rejected, keys.calibration_bins)
    rows = trl_run.history(job)
    first = next((r for r in rows if "eval_accuracy" in r), {})
    stats = {
        "model_kind": REWARD_MODEL_KIND,
        "base": str(job.extra["base"].resolve()),
        "steps": trainer.state.global_step,
        "val_accuracy": val["accuracy"],
        "val_mean_margin": val["mean_margin"],
        "val_ece": val["ece"],
    }
    checkpoint = write_checkpoint(job, trainer, tokenizer, stats, chosen)
    data = job.extra["data"]
    results = {
        **stats,
        "val": val,
        "train": {k: v for k, v in train.items() if k != "calibration"},
        "first_val_accuracy": first.get("eval_accuracy"),
        "pairs": trl_run.pair_counts(job),
        "data": data.stats,
        "seconds": seconds,
        "samples_per_s": last_logged(rows, "train_samples_per_second"),
        "train_runtime_s": last_logged(rows, "train_runtime"),
        "peak_memory": peak,
        "checkpoint": str(checkpoint),
    }
    plots = {
        "calibration.png": lambda png: plot_calibration(val, png),
        "loss.png": lambda png: trl_run.plot_curves(
            rows,
            {"loss": "train loss", "eval_loss": "val loss", "eval_accuracy": "val accuracy"},
            png,
            "reward model",
            "loss (nats/pair) · accuracy",
        ),
    }
    results["report"] = str(
        trl_run.write_report(
            job, results, rows, plots, ("val_accuracy", "val_mean_margin", "val_ece", "steps")
        )
    )
    return results


def write_checkpoint(
    job: trl_run.TrlJob, trainer: Any, tokenizer: Any, stats: dict, trained_chosen: Any
) -> Path:
    """The reward model as a `checkpoint` artifact, loaded back before it is published: the reloaded model must
    give the held-out chosen replies the scores the trained one gave (the score head saved intact)."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification

    with atomic_dir(job.checkpoint_dir) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp)
        reloaded.to(next(trainer.model.parameters()).device)
        again, _ = score_pairs(reloaded, tokenizer, trainer.eval_dataset, job.keys.batch_size)
        drift = float(np.max(np.abs(again - trained_chosen))) if len(again) else 0.0
        if drift > SAVE_TOLERANCE:
            raise RuntimeError(
                f"the saved reward model scores held-out replies up to {drift:.3g} away from the trained one "
                "(its score head was not saved intact); nothing was written"
            )
        write_manifest(
            tmp,
            "checkpoint",
            recipe=job.recipe.to_dict(),
            inputs=job.inputs,
            stats={**stats, "reload_max_score_diff": drift, "variant": "full"},
        )
    return job.checkpoint_dir


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    val = results["val"]
    lo, hi = val["accuracy_ci95"]
    first = results.get("first_val_accuracy")
    return {
        "steps": results["steps"],
        "val pairs": val["pairs"],
        "val accuracy": (f"{first:.3f} → " if first is not None else "")
        + f"{val['accuracy']:.3f} (95% CI {lo:.3f}–{hi:.3f})",
        "val mean margin (chosen − rejected)": f"{val['mean_margin']:.4f}",
        "val calibration error (ECE)": f"{val['ece']:.4f}",
        "train accuracy": f"{results['train']['accuracy']:.3f}",
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
