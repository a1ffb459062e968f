"""The transformers callback of `finetune sft`: a rich progress bar with rate and ETA, metrics.jsonl (rewound to
the checkpoint on resume, so it reads as one uninterrupted run), and SIGTERM/SIGINT turned into
save-then-stop at the end of the step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmforge.console import info, progress, rate_text
from llmforge.metrics_log import MetricsLog, peak_memory_bytes, reset_peak_memory


class Progress(TrainerCallback):
    def __init__(self, metrics: Path, stop: Any, resume_from: Path | None) -> None:
        self.metrics_path, self.stop, self.resume_from = metrics, stop, resume_from
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
        self.task = self.bar.add_task("fine-tuning", total=state.max_steps, rate="")
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
