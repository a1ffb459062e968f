"""The `report` artifact: `results.json` in lm-eval's format, `report.md`, `manifest.json`.

lm-eval keys a task's numbers as `"<metric>,<filter>"` with the standard error under
`"<metric>_stderr,<filter>"`; perplexity reports written by llmforge use the same shape, so `compare` and
the summary table read every report alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, require, write_json, write_manifest
from llmforge.console import UserError

RESULTS = "results.json"
REPORT_MD = "report.md"


@dataclass(frozen=True)
class Metric:
    task: str
    metric: str
    filter: str
    value: float
    stderr: float | None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def metrics(results: dict[str, Any]) -> list[Metric]:
    """Every numeric metric of every task in an lm-eval style results dict, with its stderr when given."""
    out = []
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if "," not in key or "_stderr," in key or _number(value) is None:
                continue
            name, filt = key.split(",", 1)
            stderr = _number(values.get(f"{name}_stderr,{filt}"))
            out.append(Metric(task, name, filt, float(value), stderr))
    return out


def fmt(m: Metric) -> str:
    if m.stderr is None or math.isnan(m.stderr):
        return f"{m.value:.4g}"
    return f"{m.value:.4g} ± {m.stderr:.2g}"


def markdown(title: str, header: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "| task | metric | filter | value | ± stderr |", "| --- | --- | --- | ---: | ---: |"]
    for m in metrics(results):
        stderr = "" if m.stderr is None else f"{m.stderr:.4g}"
        lines.append(f"| {m.task} | {m.metric} | {m.filter} | {m.value:.4g} | {stderr} |")
    return "\n".join(lines) + "\n"


def write(
    out: Path,
    results: dict[str, Any],
    *,
    title: str,
    model_dir: Path,
    recipe: dict[str, Any],
    inputs: list[Path],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a report artifact at `out` (atomically) and return its path."""
    header = {
        "model": str(model_dir.resolve()),
        **{k: v for k, v in recipe.items() if v not in (None, [], "")},
    }
    with atomic_dir(out) as tmp:
        write_json(tmp / RESULTS, results)
        (tmp / REPORT_MD).write_text(markdown(title, header, results))
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        stats = {"model": model_label(model_dir), "metrics": len(metrics(results))}
        write_manifest(tmp, "report", recipe={"eval": recipe}, inputs=[model_dir, *inputs], stats=stats)
    return out


def model_label(model_dir: Path) -> str:
    """`<run>/step-000300` for a checkpoint of a run (`runs/<run>/checkpoints/step-000300`), else the
    directory name: two runs' checkpoints of one step stay apart."""
    resolved = Path(model_dir).resolve()
    if resolved.parent.name == "checkpoints":
        return f"{resolved.parent.parent.name}/{resolved.name}"
    return resolved.name


@dataclass(frozen=True)
class Report:
    model: str  # the evaluated model's resolved path
    label: str  # how tables name it (model_label)
    results: dict[str, Any]


def read(path: str | Path) -> Report:
    """A report artifact's results and the model it evaluated; exit 2 if it is not one."""
    path = Path(path)
    manifest = require(path, "report")
    f = path / RESULTS
    try:
        results = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{f}: unreadable results ({e})") from None
    inputs = manifest.get("inputs") or [{}]
    model = str(inputs[0].get("path") or manifest["stats"].get("model", path.name))
    return Report(model, model_label(Path(model)), results)
