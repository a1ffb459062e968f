"""`llmforge plan fit`: load runs, fit the scaling law, derive the compute-optimal allocation it implies, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmforge.console import progress, rate_text
from llmforge.plan.fit import fit_scaling_law, isoflop_groups
from llmforge.plan.observations import load_observations
from llmforge.plan.scaling_laws import FLOPS_PER_PARAM_TOKEN


def fit_report(
    paths: list[Path], *, bootstrap: int, at: list[float] | None, png: Path | None, seed: int = 0
) -> dict:
    import time

    runs = load_observations(paths)
    params = np.array([r.params for r in runs])
    tokens = np.array([r.tokens for r in runs])
    losses = np.array([r.loss for r in runs])
    with progress() as bar:
        task = bar.add_task("bootstrap refits", total=bootstrap, rate="")
        start, done = time.perf_counter(), [0]

        def tick() -> None:
            done[0] += 1
            bar.update(task, completed=done[0], rate=rate_text(done[0], time.perf_counter() - start, "fits"))

        result = fit_scaling_law(params, tokens, losses, bootstrap=bootstrap, seed=seed, on_resample=tick)
    law = result.law
    largest = float((FLOPS_PER_PARAM_TOKEN * params * tokens).max())
    budgets = at or [largest * 10**k for k in range(4)]
    allocation = []
    for budget in budgets:
        n = law.optimal_params(budget)
        d = budget / (FLOPS_PER_PARAM_TOKEN * n)
        allocation.append(
            {"flops": budget, "params": n, "tokens": d, "tokens_per_param": d / n, "loss": law.loss(n, d)}
        )
    groups = isoflop_groups(params, tokens)
    if png is not None:
        from llmforge.plan.plots import isoflop_png

        isoflop_png(params, tokens, losses, groups, law, png)
    return {
        **result.to_dict(),
        "allocation": allocation,
        "isoflop_groups": len(groups),
        "observations": [
            {
                "name": r.name,
                "params": r.params,
                "tokens": r.tokens,
                "loss": r.loss,
                "predicted": law.loss(r.params, r.tokens),
            }
            for r in runs
        ],
        "png": str(png) if png else None,
    }
