"""Agreement between people who judged the same items (raters of review sheets, labellers of preference pairs).

Krippendorff's alpha (Krippendorff, 2011, "Computing Krippendorff's Alpha-Reliability", §C for any number of
raters with missing values, §D for metrics): alpha = 1 - D_o / D_e from the coincidence matrix of values
paired within each unit. `interval` uses the squared difference as distance, `nominal` counts any
disagreement as 1 (labels such as A / B / tie). 1 is perfect agreement, 0 what chance gives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

from llmforge.console import UserError


def percent_agreement(units: list[list[Hashable]]) -> float | None:
    """The share of pairs of judgements of one unit that agree, over every unit judged twice or more."""
    agree = total = 0
    for u in units:
        for i in range(len(u)):
            for j in range(i + 1, len(u)):
                total += 1
                agree += u[i] == u[j]
    return agree / total if total else None


def krippendorff_alpha(units: list[list], level: str = "interval") -> float:
    """Krippendorff's alpha over units, each the list of values its raters gave (missing ones left out)."""
    if level not in ("interval", "nominal"):
        raise UserError(f"--level {level}: expected interval or nominal")

    def delta(a: float, b: float) -> float:
        return (a - b) ** 2 if level == "interval" else float(a != b)

    pairable = [u for u in units if len(u) >= 2]
    coincidences: Counter[tuple] = Counter()
    for u in pairable:
        m = len(u)
        for i, a in enumerate(u):
            for j, b in enumerate(u):
                if i != j:
                    coincidences[(a, b)] += 1 / (m - 1)
    n_c: Counter = Counter()
    for (a, _), w in coincidences.items():
        n_c[a] += w
    n = sum(n_c.values())
    if n <= 1:
        raise UserError("agreement needs at least one item rated by two raters")
    observed = sum(w * delta(a, b) for (a, b), w in coincidences.items()) / n
    expected = sum(n_c[a] * n_c[b] * delta(a, b) for a in n_c for b in n_c) / (n * (n - 1))
    return 1.0 if expected == 0 else 1 - observed / expected
