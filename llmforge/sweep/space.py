"""A sweep's search space file, read and checked before any trial starts (torch- and optuna-free).

    metric = "val_loss"            # or "eval:TASK" / "eval:TASK.METRIC" (e.g. eval:piqa.acc_norm)
    direction = "minimize"         # default: minimize for val_loss, maximize for an eval metric
    sampler = "tpe"                # tpe | grid | random
    pruner = "median"              # median | halving | none (default: median for val_loss, none for eval)
    trials = 12                    # finished trials (complete or pruned) the study ends with
    timeout_minutes = 60           # no new trial starts after this (per `llmforge sweep` process)
    seed = 0
    first = [{ "train.lr" = 3e-3 }]   # settings tried before the sampler takes over (e.g. today's default)

    [space]
    "train.lr" = { type = "log-float", low = 1e-4, high = 3e-2 }
    "train.warmup_steps" = { type = "int", low = 0, high = 40, step = 10 }
    "model.arch" = { type = "categorical", choices = ["llama", "gpt-neox"] }
    "train.micro_batch" = { type = "int", values = [4, 8] }   # explicit points (what grid search walks)

Every key of [space] is a recipe key (`--set` syntax). A grid walks `values` where given, a categorical's
choices, and an int's range by its step; a float range without `values` has no grid.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.console import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TYPES = ("float", "log-float", "int", "categorical")
SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "halving", "none")
SETTINGS = ("metric", "direction", "sampler", "pruner", "trials", "timeout_minutes", "seed", "first", "space")
MAX_GRID = 10_000


@dataclass(frozen=True)
class Param:
    """One searched recipe key: a float/log-float/int range (`low`..`high`, optional `step`) or `choices`;
    `values` are explicit points (a grid walks them; other samplers pick among them)."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    values: tuple[Any, ...] = ()

    @property
    def log(self) -> bool:
        return self.type == "log-float"

    def points(self) -> tuple[Any, ...] | None:
        """The grid points of this parameter, or None when it is a continuous range."""
        if self.values:
            return self.values
        if self.type == "categorical":
            return self.choices
        if self.type == "int":
            step = int(self.step or 1)
            return tuple(range(int(self.low), int(self.high) + 1, step))
        if self.step is not None:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return tuple(self.low + i * self.step for i in range(n))
        return None

    def corners(self) -> tuple[Any, ...]:
        """The values that must all make a valid recipe (checked before the first trial)."""
        if self.values or self.type == "categorical":
            return self.values or self.choices
        return (int(self.low), int(self.high)) if self.type == "int" else (self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for name in ("low", "high", "step"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.choices:
            out["choices"] = list(self.choices)
        if self.values:
            out["values"] = list(self.values)
        return out


@dataclass(frozen=True)
class Metric:
    """`val_loss` (the stage's final validation loss; its curve is what pruning watches) or an eval task's
    metric, computed by `llmforge eval run` on the trial's final checkpoint."""

    name: str
    task: str | None = None
    measure: str = "acc"

    @property
    def is_eval(self) -> bool:
        return self.task is not None

    @property
    def default_direction(self) -> str:
        return "maximize" if self.is_eval else "minimize"


@dataclass(frozen=True)
class SweepSpec:
    source: str
    params: tuple[Param, ...]
    metric: Metric
    direction: str
    sampler: str = "tpe"
    pruner: str = "median"
    trials: int = 10
    timeout_minutes: float | None = None
    seed: int = 0
    first: tuple[dict[str, Any], ...] = ()

    def grid(self) -> dict[str, list[Any]]:
        return {p.key: list(p.points() or ()) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "metric": self.metric.name,
            "direction": self.direction,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "trials": self.trials,
            "timeout_minutes": self.timeout_minutes,
            "seed": self.seed,
            "first": [dict(f) for f in self.first],
            "space": {p.key: p.to_dict() for p in self.params},
        }


def parse_metric(text: str, where: str) -> Metric:
    if text == "val_loss":
        return Metric("val_loss")
    if text.startswith("eval:") and text[5:]:
        task, _, measure = text[5:].partition(".")
        if task and (measure or "acc").replace("_", "").isalnum():
            return Metric(text, task=task, measure=measure or "acc")
    raise UserError(
        f"{where}: metric {text!r}: expected 'val_loss' or 'eval:TASK[.METRIC]' (e.g. eval:piqa.acc)"
    )


def read_space(path: Path, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The sweep file at `path`, with the command line's settings (`overrides`, None = not given) on top."""
    if not path.is_file():
        raise UserError(f"--space {path}: no such file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; a sweep file has {', '.join(SETTINGS)}")
    settings = {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise UserError(f"{path}: [space] is empty or missing; give at least one recipe key to search")
    params = tuple(_param(key, value, f"{path}: space.{key!r}") for key, value in space.items())
    metric = parse_metric(_typed(settings, "metric", str, "val_loss", path), str(path))
    direction = _one_of(settings, "direction", ("minimize", "maximize"), metric.default_direction, path)
    sampler = _one_of(settings, "sampler", SAMPLERS, "tpe", path)
    pruner = _one_of(settings, "pruner", PRUNERS, "none" if metric.is_eval else "median", path)
    if metric.is_eval and pruner != "none":
        raise UserError(f"{path}: pruner {pruner!r} watches the val-loss curve, not {metric.name}; "
                        "with an eval metric use pruner = 'none'")  # fmt: skip
    trials = _typed(settings, "trials", int, 10, path)
    if trials < 1:
        raise UserError(f"{path}: trials = {trials}: expected ≥ 1")
    timeout = settings.get("timeout_minutes")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise UserError(f"{path}: timeout_minutes = {timeout!r}: expected a positive number")
    seed = _typed(settings, "seed", int, 0, path)
    first = _first(settings.get("first", []), params, path)
    if first and sampler == "grid":
        raise UserError(
            f"{path}: first: a grid runs every point anyway; use first with sampler = 'tpe' or 'random'"
        )
    spec = SweepSpec(str(path), params, metric, direction, sampler, pruner, trials, timeout, seed, first)
    if sampler == "grid":
        _check_grid(spec, path)
    return spec


def _first(raw: Any, params: tuple[Param, ...], path: Path) -> tuple[dict[str, Any], ...]:
    """The `first` trials: each a table of searched keys (others are sampled) with a value in the space."""
    if not isinstance(raw, list) or any(not isinstance(f, dict) or not f for f in raw):
        raise UserError(f'{path}: first must be a list of tables, e.g. first = [{{ "train.lr" = 3e-3 }}]')
    by_key = {p.key: p for p in params}
    for i, values in enumerate(raw):
        for key, value in values.items():
            p = by_key.get(key)
            if p is None:
                raise UserError(f"{path}: first[{i}]: {key!r} is not a key of [space]")
            if not _inside(p, value):
                raise UserError(f"{path}: first[{i}]: {key} = {value!r} is outside its space {p.to_dict()}")
    return tuple(dict(f) for f in raw)


def _inside(p: Param, value: Any) -> bool:
    if p.values or p.type == "categorical":
        return value in (p.values or p.choices)
    if isinstance(value, bool) or not isinstance(value, int if p.type == "int" else (int, float)):
        return False
    return p.low <= value <= p.high


def _check_grid(spec: SweepSpec, path: Path) -> None:
    size = 1
    for p in spec.params:
        points = p.points()
        if not points:
            raise UserError(
                f"{path}: space.{p.key!r}: a grid needs points: give `values = [...]` or a `step`"
            )
        size *= len(points)
    if size > MAX_GRID:
        raise UserError(f"{path}: the grid has {size:,} points (over {MAX_GRID:,}); use sampler = 'tpe'")


def _param(key: str, value: Any, where: str) -> Param:
    if not isinstance(value, dict):
        raise UserError(
            f'{where}: expected a table such as {{ type = "log-float", low = 1e-4, high = 1e-2 }}'
        )
    if any(not part for part in key.split(".")) or "=" in key:
        raise UserError(f"{where}: not a dotted recipe key (e.g. train.lr)")
    allowed = {"type", "low", "high", "step", "choices", "values"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise UserError(f"{where}: unknown field {extra[0]!r} (a parameter has {', '.join(sorted(allowed))})")
    kind = value.get("type")
    if kind not in TYPES:
        raise UserError(f"{where}: type = {kind!r}: expected one of {', '.join(TYPES)}")
    values = tuple(value.get("values") or ())
    if "values" in value and (not isinstance(value["values"], list) or not values):
        raise UserError(f"{where}: values must be a non-empty list")
    if kind == "categorical":
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: a categorical needs a non-empty list of choices")
        if len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{where}: choices repeat a value")
        return Param(key, kind, choices=tuple(choices), values=values)
    if values:
        number = int if kind == "int" else (int, float)
        if any(isinstance(v, bool) or not isinstance(v, number) for v in values):
            raise UserError(f"{where}: values must all be {'integers' if kind == 'int' else 'numbers'}")
        if kind == "log-float" and any(v <= 0 for v in values):
            raise UserError(f"{where}: a log-float's values must be > 0")
        return Param(key, kind, low=min(values), high=max(values), values=values)
    low, high, step = value.get("low"), value.get("high"), value.get("step")
    number = int if kind == "int" else (int, float)
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v):
            raise UserError(f"{where}: {name} must be {'an integer' if kind == 'int' else 'a finite number'}")
    if low >= high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if kind == "log-float" and low <= 0:
        raise UserError(f"{where}: a log-float range must be > 0 (low = {low})")
    if step is not None:
        if kind == "log-float":
            raise UserError(f"{where}: a log-float has no step (use values = [...] for fixed points)")
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            raise UserError(f"{where}: step must be a positive {'integer' if kind == 'int' else 'number'}")
    return Param(key, kind, low=low, high=high, step=step)


def _typed(settings: dict, key: str, kind: type, default: Any, path: Path) -> Any:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise UserError(f"{path}: {key} = {value!r}: expected {'an integer' if kind is int else 'text'}")
    return value


def _one_of(settings: dict, key: str, allowed: tuple[str, ...], default: str, path: Path) -> str:
    value = settings.get(key, default)
    if value not in allowed:
        raise UserError(f"{path}: {key} = {value!r}: expected one of {', '.join(allowed)}")
    return value
