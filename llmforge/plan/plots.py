"""PNG figures (matplotlib, Agg backend, imported only when a plot is asked for)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from llmforge.plan.scaling_laws import FLOPS_PER_PARAM_TOKEN, LossLaw, allocate


def _save(fig, path: Path) -> None:
    """PNG under a temporary sibling name, renamed into place when complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def isoflop_png(
    params: np.ndarray,
    tokens: np.ndarray,
    losses: np.ndarray,
    groups: list[np.ndarray],
    law: LossLaw,
    path: Path,
) -> None:
    """Loss against model size per compute budget, with the fitted law's IsoFLOP curve and its minimum."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(groups)))
    for color, idx in zip(colors, groups, strict=True):
        budget = float(np.exp(np.mean(np.log(FLOPS_PER_PARAM_TOKEN * params[idx] * tokens[idx]))))
        ax.scatter(params[idx], losses[idx], color=color, label=f"C = {budget:.2g}")
        n = np.geomspace(params[idx].min() / 2, params[idx].max() * 2, 200)
        ax.plot(n, law.loss(n, budget / (FLOPS_PER_PARAM_TOKEN * n)), color=color, lw=1)
        n_opt = law.optimal_params(budget)
        ax.scatter(
            [n_opt],
            [law.loss(n_opt, budget / (FLOPS_PER_PARAM_TOKEN * n_opt))],
            color=color,
            marker="*",
            s=160,
            edgecolor="black",
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final validation loss")
    ax.set_title(
        f"IsoFLOP curves of L = {law.E:.2f} + {law.A:.3g}/N^{law.alpha:.2f} + {law.B:.3g}/D^{law.beta:.2f}"
        " (★ = optimum)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def frontier_png(rows: list[dict], path: Path) -> None:
    """Training tokens against parameters, with the Chinchilla-optimal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    n = np.geomspace(min(r["params"] for r in rows) / 2, max(r["params"] for r in rows) * 2, 100)
    ax.plot(
        n,
        [allocate("chinchilla", params=x).tokens for x in n],
        "k--",
        lw=1,
        label="Chinchilla-optimal (≈20 tokens/param)",
    )
    # labels alternate above and below their points: neighbours such as GPT-3 and Jurassic-1 would overlap
    for i, r in enumerate(rows):
        style = {"color": "tab:red", "marker": "*", "s": 120} if r["ours"] else {"color": "tab:blue", "s": 25}
        ax.scatter([r["params"]], [r["tokens"]], **style)
        offset = (3, 3 if i % 2 else -9)
        ax.annotate(
            r["name"], (r["params"], r["tokens"]), fontsize=7, xytext=offset, textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("training tokens")
    ax.set_title("Above the line: trained past compute-optimal; below: under-trained", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
