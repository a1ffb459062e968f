"""What a trial runs for each stage a sweep or an ablation can drive: the command, where the run's outputs
go, its validation-loss curve (what pruning watches) and its final results. A stage is run as a child
process (`llmforge STAGE RECIPE --json`), exactly as a user runs it, so a trial is a real run with its own
artifacts, and a crash of one trial never takes the sweep down."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.console import UserError


@dataclass(frozen=True)
class Stage:
    name: str
    table: str  # the recipe table the stage needs
    curve_key: str  # the val-loss key of its metrics lines
    final_key: str  # the final val loss in its --json results

    def overrides(self, run_dir: Path) -> list[str]:
        """`--set` items that put every output of this stage inside the trial's run directory."""
        return [f"finetune.out={run_dir / 'finetune'}"] if self.name == "finetune" else []

    def argv(self, recipe: Path, tokens: Path | None) -> list[str]:
        if self.name == "pretrain":
            return ["pretrain", str(recipe), *(["--tokens", str(tokens)] if tokens else []), "--json"]
        return ["finetune", "sft", str(recipe), "--json"]

    def metrics_file(self, run_dir: Path) -> Path:
        """Where the running stage appends its metrics lines."""
        if self.name == "pretrain":
            return run_dir / "metrics.jsonl"
        return run_dir / "finetune" / "trainer" / "metrics.jsonl"

    def finished_metrics_file(self, run_dir: Path) -> Path:
        """Where they are once the stage has ended (finetune moves them into its report and removes trainer/)."""
        return (
            self.metrics_file(run_dir)
            if self.name == "pretrain"
            else self.report_dir(run_dir) / "metrics.jsonl"
        )

    def report_dir(self, run_dir: Path) -> Path:
        return (
            run_dir / "reports" / "pretrain" if self.name == "pretrain" else run_dir / "finetune" / "report"
        )


STAGES = {
    "pretrain": Stage("pretrain", "train", curve_key="val_loss", final_key="final_val_loss"),
    "finetune": Stage("finetune", "finetune", curve_key="eval_loss", final_key="val_loss"),
}


def stage_named(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise UserError(f"--stage {name!r}: expected one of {', '.join(STAGES)}") from None


class Curve:
    """The val-loss points a running trial has written so far, read incrementally from its metrics file
    (a resumed run rewinds the file: points are keyed by step, so a rewritten step replaces the old one)."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self.points: dict[int, float] = {}
        self._offset = 0

    def poll(self) -> list[tuple[int, float]]:
        """The points that appeared since the last poll, in step order."""
        if not self.path.is_file():
            return []
        size = self.path.stat().st_size
        if size < self._offset:  # rewound on resume
            self._offset = 0
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1  # a line being written is read next time
        self._offset += cut
        new = []
        for line in chunk[:cut].splitlines():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            value = row.get(self.key)
            if isinstance(value, (int, float)) and isinstance(row.get("step"), int):
                if self.points.get(row["step"]) != value:
                    self.points[row["step"]] = float(value)
                    new.append((row["step"], float(value)))
        return sorted(new)

    def poll_finished(self, finished: Path) -> list[tuple[int, float]]:
        """The points that appeared since the last poll, once the run has ended and its lines may have moved to
        `finished`: the last poll of the live file, then the points of `finished` not seen yet."""
        new = dict(self.poll())
        if finished != self.path:
            for step, value in Curve(finished, self.key).poll():
                if self.points.get(step) != value or step in new:
                    self.points[step] = value
                    new[step] = value
        return sorted(new.items())


def final_value(stage: Stage, results: dict[str, Any]) -> float | None:
    value = results.get(stage.final_key)
    return float(value) if isinstance(value, (int, float)) else None
