"""The PNGs of a sweep (optimisation history, parameter importance, val-loss curves) and of an ablation
(each variant's runs with mean ± std). Matplotlib on the Agg backend, drawn from plain rows so they are
testable without Optuna."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"complete": "#1f77b4", "pruned": "#ff7f0e", "failed": "#d62728"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict[str, Any]], metric: str, direction: str, out: Path) -> None:
    """Each complete trial's value by trial number, and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], color=COLORS["complete"],
               label="trial", zorder=3)  # fmt: skip
    best, xs, ys = None, [], []
    pick = min if direction == "minimize" else max
    for r in sorted(done, key=lambda r: r["number"]):
        best = r["value"] if best is None else pick(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    for r in rows:
        if r["state"] in ("pruned", "failed"):
            ax.axvline(r["number"], color=COLORS[r["state"]], alpha=0.3, lw=1)
    ax.plot([], [], color=COLORS["pruned"], alpha=0.5, label="pruned (line)")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"optimisation history ({direction})")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_importance(importances: dict[str, float], out: Path) -> None:
    plt = _plt()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color=COLORS["complete"])
    ax.set_xlabel("importance (fANOVA, share of the metric's variance)")
    ax.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_curves(rows: list[dict[str, Any]], out: Path) -> None:
    """The val-loss curve of every trial: pruned ones end where they were stopped."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        curve = r.get("curve") or {}
        if not curve:
            continue
        steps = sorted(int(s) for s in curve)
        ax.plot(steps, [curve[str(s)] for s in steps], marker=".", color=COLORS.get(r["state"], "grey"),
                alpha=0.8, lw=1)  # fmt: skip
        ax.annotate(str(r["number"]), (steps[-1], curve[str(steps[-1])]), fontsize=7)
    for state in ("complete", "pruned"):
        ax.plot([], [], color=COLORS[state], label=state)
    ax.set_xlabel("step")
    ax.set_ylabel("val loss")
    ax.set_title("val-loss curves (trial numbers at the ends)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_ablation(variants: list[dict[str, Any]], metric: str, out: Path) -> None:
    """Each run's value (dots) and each variant's mean ± sample std (bar and whisker)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(variants)), 4))
    for i, v in enumerate(variants):
        ax.bar(i, v["mean"], yerr=v["std"] or 0, color="#c6dbef", edgecolor="#1f77b4", capsize=6, width=0.6)
        ax.scatter([i] * len(v["values"]), v["values"], color="#1f77b4", zorder=3, s=18)
    ax.set_xticks(range(len(variants)), [v["name"] for v in variants], rotation=15, fontsize=8)
    values = [x for v in variants for x in v["values"]]
    if values:
        span = max(values) - min(values) or abs(max(values)) * 0.05 or 1.0
        ax.set_ylim(min(values) - span, max(values) + span)
    ax.set_ylabel(metric)
    ax.set_title("ablation: runs (dots), mean ± std")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
