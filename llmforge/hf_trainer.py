"""What the stages that train through a transformers/trl `Trainer` share (finetune sft, rlhf reward/dpo/rloo/grpo):
the progress callback (a rich bar with rate and ETA, metrics.jsonl rewound to the checkpoint on resume so it
reads as one uninterrupted run, SIGTERM/SIGINT turned into save-then-stop at the end of the step), the resume
point (the newest complete trainer checkpoint, refused when the run's inputs changed) and config helpers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmforge.console import UserError, info, progress, rate_text
from llmforge.metrics_log import MetricsLog, peak_memory_bytes, reset_peak_memory


class Progress(TrainerCallback):
    def __init__(
        self, metrics: Path, stop: Any, resume_from: Path | None, label: str = "fine-tuning"
    ) -> None:
        self.metrics_path, self.stop, self.resume_from, self.label = metrics, stop, resume_from, label
        self.metrics: MetricsLog | None = None
        self.bar: Any = None
        self.task: Any = None
        self.started = 0.0
        self.first_step = 0
        self.peak_memory = 0  # of the training loop (loading and tokenizing left out)

    def on_train_begin(self, args, state, control, **kwargs):
        self.metrics = MetricsLog(self.metrics_path, state.global_step or None)
        if state.global_step:
            info(f"resuming from step {state.global_step} ({self.resume_from})")
        self.bar = progress()
        self.bar.__enter__()
        self.first_step = state.global_step
        self.task = self.bar.add_task(self.label, total=state.max_steps, rate="")
        self.bar.update(self.task, completed=state.global_step)
        reset_peak_memory()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self.first_step
        self.bar.update(
            self.task,
            completed=state.global_step,
            rate=rate_text(done, time.perf_counter() - self.started, "steps"),
        )
        if self.stop.signum:
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.metrics is None:  # an evaluate() outside train()
            self.metrics = MetricsLog(self.metrics_path, state.global_step)
        self.metrics.write({"step": state.global_step, "epoch": state.epoch, **logs})
        if "eval_loss" in logs:
            info(f"step {state.global_step}: val loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        self.peak_memory = peak_memory_bytes()
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


RUN_FILE = "run.json"


def complete_checkpoints(trainer_dir: Path) -> list[Path]:
    """checkpoint-N folders whose trainer_state.json (written last by transformers) exists, by step."""
    found = [
        p
        for p in trainer_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resume_point(
    trainer_dir: Path, result: Path, resume_key: dict[str, Any], *, fresh: bool, out_key: str, what: str
) -> Path | None:
    """The checkpoint to resume from (None: start), or UserError when `result` is already finished or the
    checkpoints were trained on other inputs (`resume_key` differs from the one recorded in run.json)."""
    if fresh:
        return None
    if (result / "manifest.json").is_file() and not trainer_dir.is_dir():
        raise UserError(
            f"{result}: this {what} already finished; pass --fresh to train again (it replaces the result) "
            f"or set {out_key} to another folder"
        )
    checkpoints = complete_checkpoints(trainer_dir)
    if not checkpoints:
        return None
    run_file = trainer_dir / RUN_FILE
    recorded = json.loads(run_file.read_text()).get("resume_key", {}) if run_file.is_file() else {}
    changed = sorted(k for k in {*recorded, *resume_key} if recorded.get(k) != resume_key.get(k))
    if changed:
        raise UserError(
            f"{trainer_dir}: its checkpoints were trained with other {', '.join(changed)}; pass --fresh "
            f"to start over, or set {out_key} to another folder"
        )
    return checkpoints[-1]


def checkpointing_key() -> str:
    """transformers 5.24 renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
    from transformers import TrainingArguments

    return (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )


def read_history(metrics: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl (a torn last line, from a kill, is skipped)."""
    if not metrics.is_file():
        return []
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def last_logged(rows: list[dict], key: str) -> Any:
    for r in reversed(rows):
        if key in r:
            return r[key]
    return None
