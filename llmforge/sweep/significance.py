"""Mean ± std of each ablation variant and Welch's t-test between variants.

Welch (1947): t = (m₁ − m₂) / √(s₁²/n₁ + s₂²/n₂) with the Welch–Satterthwaite degrees of freedom
ν = (s₁²/n₁ + s₂²/n₂)² / ((s₁²/n₁)²/(n₁−1) + (s₂²/n₂)²/(n₂−1)); the two-sided p-value is that of Student's t
with ν degrees of freedom (scipy's `ttest_ind(equal_var=False)` computes the same). Sample standard
deviations (n − 1). A difference counts as significant when p < alpha; the default 0.01 is modded-nanogpt's
bar for a new record.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

DEFAULT_ALPHA = 0.01


def describe(values: list[float]) -> dict[str, Any]:
    n = len(values)
    return {
        "n": n,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if n > 1 else None,
        "values": list(values),
    }


def welch(a: list[float], b: list[float]) -> dict[str, Any]:
    """Welch's t-test of mean(a) against mean(b): t, degrees of freedom, two-sided p."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return {"t": None, "dof": None, "p": None, "reason": "fewer than 2 runs"}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        same = statistics.fmean(a) == statistics.fmean(b)
        return {"t": 0.0 if same else math.copysign(math.inf, statistics.fmean(a) - statistics.fmean(b)),
                "dof": None, "p": 1.0 if same else 0.0, "reason": "no variance within either variant"}  # fmt: skip
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = 2 * stats.t.sf(abs(t), dof)
    return {"t": t, "dof": dof, "p": float(p)}


def compare(
    variants: list[dict[str, Any]], direction: str, alpha: float = DEFAULT_ALPHA
) -> list[dict[str, Any]]:
    """Each variant after the first against the first (the baseline): difference of means, Welch's test,
    and whether it is significantly better / worse at `alpha`."""
    base = variants[0]
    out = []
    for v in variants[1:]:
        test = welch(v["values"], base["values"])
        delta = (v["mean"] - base["mean"]) if v["mean"] is not None and base["mean"] is not None else None
        verdict = "not significant"
        if test["p"] is not None and test["p"] < alpha and delta:
            better = delta < 0 if direction == "minimize" else delta > 0
            verdict = "better" if better else "worse"
        out.append({"variant": v["name"], "baseline": base["name"], "delta": delta, **test, "alpha": alpha,
                    "verdict": verdict})  # fmt: skip
    return out
