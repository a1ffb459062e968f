"""Comparing reports across checkpoints (training progress, before/after fine-tuning): a table and a plot.

Reports of the same model (e.g. a benchmark report and a perplexity report of one checkpoint) merge into one
column; columns keep the order the reports were given in, and the delta is last column minus first. A column is
named by run and step (`tiny/step-000300`); models that would still share a name are named by their path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmforge.console import UserError
from llmforge.eval import report


@dataclass
class Comparison:
    models: list[str]
    # (task, metric, filter) -> model -> Metric
    rows: dict[tuple[str, str, str], dict[str, report.Metric]]

    def delta(self, key: tuple[str, str, str]) -> float | None:
        first, last = self.rows[key].get(self.models[0]), self.rows[key].get(self.models[-1])
        if first is None or last is None or len(self.models) < 2:
            return None
        return last.value - first.value

    def to_json(self) -> dict:
        return {
            "models": self.models,
            "rows": [
                {
                    "task": task,
                    "metric": metric,
                    "filter": filt,
                    "values": {m: per_model[m].value for m in self.models if m in per_model},
                    "stderr": {m: per_model[m].stderr for m in self.models if m in per_model},
                    "delta": self.delta((task, metric, filt)),
                }
                for (task, metric, filt), per_model in self.rows.items()
            ],
        }


def load(paths: list[Path]) -> Comparison:
    if not paths:
        raise UserError("compare: give at least one report")
    reports = [report.read(path) for path in paths]
    names = _column_names([r.model for r in reports], {r.model: r.label for r in reports})
    models: list[str] = []
    rows: dict[tuple[str, str, str], dict[str, report.Metric]] = {}
    for r in reports:
        column = names[r.model]
        if column not in models:
            models.append(column)
        for m in report.metrics(r.results):
            rows.setdefault((m.task, m.metric, m.filter), {})[column] = m
    return Comparison(models, rows)


def _column_names(models: list[str], labels: dict[str, str]) -> dict[str, str]:
    """One name per distinct model: its label, or its path where two models share a label."""
    distinct = list(dict.fromkeys(models))
    taken = [labels[m] for m in distinct]
    return {m: labels[m] if taken.count(labels[m]) == 1 else m for m in distinct}


def plot(comparison: Comparison, out: Path) -> Path:
    """One panel per metric: value (± stderr) against the models in order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(comparison.rows)
    cols = min(3, len(keys)) or 1
    nrows = (len(keys) + cols - 1) // cols or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        per_model = comparison.rows[key]
        xs = [m for m in comparison.models if m in per_model]
        ys = [per_model[m].value for m in xs]
        errs = [per_model[m].stderr or 0.0 for m in xs]
        ax.errorbar(range(len(xs)), ys, yerr=errs, marker="o", capsize=3)
        ax.set_xticks(range(len(xs)), xs, rotation=20, fontsize=8)
        task, metric, filt = key
        ax.set_title(f"{task}: {metric}" + ("" if filt == "none" else f" ({filt})"), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
