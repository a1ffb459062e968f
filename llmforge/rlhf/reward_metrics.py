"""How well a reward model ranks held-out pairs: pairwise accuracy, margins and calibration (numpy only).

Under the Bradley–Terry model the reward model trains (Ouyang et al. 2022 §3.5), σ(r_chosen − r_rejected) is its
probability that the chosen reply is the better one. A calibrated model is right on a fraction p of the pairs
it gives confidence p: the reliability diagram bins pairs by confidence σ(|Δ|) and compares each bin's accuracy
with its mean confidence; the expected calibration error (Guo et al. 2017) is their gap weighted by bin size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pairwise_metrics(chosen: np.ndarray, rejected: np.ndarray, bins: int = 10) -> dict[str, Any]:
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    delta = chosen - rejected
    n = len(delta)
    correct = delta > 0
    accuracy = float(correct.mean()) if n else float("nan")
    return {
        "pairs": n,
        "accuracy": accuracy,
        "accuracy_ci95": wilson_interval(int(correct.sum()), n),
        "ties": int((delta == 0).sum()),
        "mean_margin": float(delta.mean()) if n else float("nan"),
        "median_margin": float(np.median(delta)) if n else float("nan"),
        "mean_chosen": float(chosen.mean()) if n else float("nan"),
        "mean_rejected": float(rejected.mean()) if n else float("nan"),
        "calibration": calibration(delta, bins),
        "ece": expected_calibration_error(delta, bins),
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score interval of a proportion (better than the normal one for small n or p near 0/1)."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _confidence(delta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.abs(delta)))


def calibration(delta: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Per confidence bin over [0.5, 1]: pairs, mean confidence and accuracy (empty bins left out)."""
    delta = np.asarray(delta, dtype=np.float64)
    conf = _confidence(delta)
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "pairs": int(members.sum()),
                    "confidence": float(conf[members].mean()),
                    "accuracy": float((delta[members] > 0).mean()),
                }
            )
    return rows


def expected_calibration_error(delta: np.ndarray, bins: int) -> float:
    n = len(delta)
    if n == 0:
        return float("nan")
    return float(sum(r["pairs"] / n * abs(r["accuracy"] - r["confidence"]) for r in calibration(delta, bins)))


def plot_calibration(metrics: dict[str, Any], png: Path, title: str = "reward model calibration") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = metrics["calibration"]
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0.5, 1], [0.5, 1], "--", color="grey", label="perfectly calibrated")
    if rows:
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            "o-",
            label=f"held-out pairs (n = {metrics['pairs']})",
        )
        for r in rows:
            ax.annotate(
                str(r["pairs"]),
                (r["confidence"], r["accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlim(0.5, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence σ(|r_chosen − r_rejected|)")
    ax.set_ylabel("accuracy (chosen scored higher)")
    ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.3f}, ECE {metrics['ece']:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100, metadata={"Software": None})
    plt.close(fig)
