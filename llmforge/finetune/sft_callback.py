"""The transformers callback of `finetune sft`: a rich progress bar with rate and ETA, metrics.jsonl (rewound to
the checkpoint on resume, so it reads as one uninterrupted run), and SIGTERM/SIGINT turned into
save-then-stop at the end of the step."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmforge.console import info, progress, rate_text


class Progress(TrainerCallback):
    def __init__(self, metrics: Path, stop: Any, resume_from: Path | None) -> None:
        self.metrics, self.stop, self.resume_from = metrics, stop, resume_from
        self.bar: Any = None
        self.task: Any = None
        self.started = 0.0
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        rewind(self.metrics, state.global_step)
        if state.global_step:
            info(f"resuming from step {state.global_step} ({self.resume_from})")
        self.bar = progress()
        self.bar.__enter__()
        self.first_step = state.global_step
        self.task = self.bar.add_task("fine-tuning", total=state.max_steps, rate="")
        self.bar.update(self.task, completed=state.global_step)
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
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")
        if "eval_loss" in logs:
            info(f"step {state.global_step}: val loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def rewind(metrics: Path, step: int) -> None:
    """metrics.jsonl as of `step`: the lines a resumed run will log again are dropped."""
    if step == 0 or not metrics.is_file():
        metrics.write_text("")
        return
    kept = []
    for line in metrics.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    metrics.write_text("".join(line + "\n" for line in kept))
