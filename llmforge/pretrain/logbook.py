"""What a run records as it goes: throughput, MFU, `metrics.jsonl` lines, events, Accelerate's trackers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.console import info, warn
from llmforge.pretrain.metrics import MetricsLog, Peak, device_peak, peak_memory_bytes, tracker_config
from llmforge.recipe import Recipe

METRICS_FILE = "metrics.jsonl"


@dataclass
class Meter:
    """Tokens and compute seconds of this process's run, and of the window since the last log line."""

    run_tokens: int = 0
    run_time: float = 0.0
    window_tokens: int = 0
    window_time: float = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.run_tokens += tokens
        self.run_time += seconds
        self.window_tokens += tokens
        self.window_time += seconds

    def take_window(self) -> tuple[int, float]:
        window = self.window_tokens, self.window_time
        self.window_tokens, self.window_time = 0, 0.0
        return window

    @property
    def tokens_per_s(self) -> float:
        return self.run_tokens / self.run_time if self.run_time else 0.0


@dataclass
class Logbook:
    """Rank 0 writes; on other ranks every method is a no-op except the MFU arithmetic."""

    recipe: Recipe
    accelerator: Any
    flops_per_token: float
    world: int
    resume_step: int | None  # the checkpoint's step when resuming (later lines are dropped)
    meter: Meter = field(default_factory=Meter)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        train = self.recipe.table("train")
        self.trackers = train.trackers
        self.peak: Peak = device_peak(train.precision, train.peak_flops)
        self.main = self.accelerator.is_main_process
        self.metrics = None
        if self.main:
            flops = f"{self.peak.flops:.3g} FLOP/s" if self.peak.flops else "none"
            info(f"MFU peak per device: {flops} for {self.peak.device} ({self.peak.source})")
            self.metrics = MetricsLog(self.recipe.run_dir / METRICS_FILE, self.resume_step)

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation (Chowdhery et al. 2022, PaLM App. B): achieved model FLOP/s over peak."""
        if not self.peak.flops:
            return None
        return self.flops_per_token * tokens_per_s / (self.peak.flops * self.world)

    def start_trackers(self) -> None:
        """Accelerate's trackers, given the `[model]` and `[train]` tables. A resumed run hides what
        TensorBoard logged after its checkpoint (as metrics.jsonl drops those lines)."""
        if not self.main or not self.trackers:
            return
        tables = self.recipe.to_dict()
        self.accelerator.init_trackers(
            self.recipe.run.name,
            config=tracker_config({k: tables[k] for k in ("model", "train")}),
            init_kwargs=self._tracker_kwargs(),
        )

    def _tracker_kwargs(self) -> dict[str, dict[str, Any]]:
        """Per tracker: TensorBoard hides steps after a resumed checkpoint; W&B gets the tags and group (a
        sweep's and trial's ids), keeps its files in the run's trackers/ folder and names the run; MLflow
        gets the tags."""
        train = self.recipe.table("train")
        kwargs: dict[str, dict[str, Any]] = {}
        if self.resume_step is not None:
            kwargs["tensorboard"] = {"purge_step": self.resume_step + 1}
        wandb = {"dir": str(self.recipe.run_dir / "trackers"), "name": self.recipe.run.name}
        if train.tracker_tags:
            wandb["tags"] = list(train.tracker_tags)
            kwargs["mlflow"] = {"tags": {t: "1" for t in train.tracker_tags}}
        if train.tracker_group:
            wandb["group"] = train.tracker_group
        kwargs["wandb"] = wandb
        return {k: v for k, v in kwargs.items() if k in self.trackers}

    def end_trackers(self) -> None:
        if self.trackers:
            self.accelerator.end_training()

    def step(self, step: int, values: dict[str, Any]) -> None:
        """One metrics line: `values` (loss, lr, ...) with the throughput of the window since the last line."""
        tokens, seconds = self.meter.take_window()
        tokens_per_s = tokens / seconds if seconds else 0.0
        record = {
            "step": step,
            **values,
            "tokens_per_s": tokens_per_s,
            "mfu": self.mfu(tokens_per_s),
            "peak_mem": peak_memory_bytes(),
        }
        if self.metrics:
            self.metrics.write(record)
        if self.trackers:
            numbers = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
            self.accelerator.log(numbers, step=step)

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        warn(f"step {event['step']}: {event['reason']} → {event['action']}")
        if self.metrics:
            self.metrics.write(event)

    def rewind(self, step: int) -> None:
        """Forget lines after `step` (the run went back to that step's checkpoint)."""
        if self.metrics:
            self.metrics.truncate(step)

    @property
    def path(self) -> Path:
        return self.recipe.run_dir / METRICS_FILE
