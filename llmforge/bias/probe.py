"""What every bias probe is handed and what it gives back.

A probe is one module under `llmforge/bias/probes/` with
- `NAME` (its `--probes` name) and `SUMMARY` (one line for `llmforge bias probes`);
- `check(ctx) -> None`: reads and validates its data (UserError naming the file, row and what was expected)
  before any model is loaded, so a bad file exits 2 before the work starts;
- `run(ctx) -> ProbeResult`: the measurement.
Probes are torch-free at import; they import torch, transformers or lm-eval inside `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProbeContext:
    """One probe's inputs. `load()` gives the model (a `generation.loading.Loaded`), loaded once per bias run
    and shared by the probes; `options` is the probe's own `[bias.<name>]` table (a dict; empty if absent)."""

    model_path: Path
    data_dir: Path | None
    work_dir: Path  # this probe's folder inside the report (lm-eval sub-reports, per-item samples)
    limit: int | None  # at most this many items (pairs, prompts, rows) per probe; None: all
    seed: int
    device: str
    batch_size: int
    steer: Any | None = None  # a `generation.steering.Steering`, applied to every generation when given
    options: dict[str, Any] = field(default_factory=dict)
    load: Callable[[], Any] | None = None

    def data_file(self, default: str, key: str = "path") -> Path:
        """`options[key]` when given (absolute after recipe resolution), else `default` under the data dir."""
        given = self.options.get(key)
        if given:
            return Path(given)
        if self.data_dir is None:
            from llmforge.console import UserError

            raise UserError(f"no data for this probe: give --data-dir (expected {default} under it)")
        return self.data_dir / default


@dataclass
class GroupScore:
    """One metric of one group (a bias category, a BOLD domain's group, a WinoBias type): value, 95% interval,
    the number of items it averages and the unbiased value where one exists (50 for a stereotype score)."""

    group: str
    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    ideal: float | None = None


@dataclass
class ProbeResult:
    """A probe's numbers: `metrics` the headline values over all items (with `intervals` where computed),
    `groups` the per-group breakdown, `caveats` what a reader must know (too few items, a missing scorer)."""

    probe: str
    metrics: dict[str, float]
    n_items: int
    groups: list[GroupScore] = field(default_factory=list)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    ideal: dict[str, float] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # JSON-safe extras (settings used, sub-reports)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        return d
