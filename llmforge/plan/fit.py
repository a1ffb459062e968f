"""Fit your own scaling law L(N, D) = E + A/N^α + B/D^β to finished runs (Hoffmann et al. 2022, §3.3, App. D.2).

As in the paper: minimise the Huber loss (δ = 1e-3) between log L̂ and log L over the runs, with
log L̂ = LSE(a − α·log N, b − β·log D, e), A = exp(a), B = exp(b), E = exp(e); L-BFGS started from the best
points of the paper's grid (α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1.5}, a, b ∈ {0, 5, …, 25}). Intervals come
from refitting on bootstrap resamples of the runs (Besiroglu et al. 2024 showed the paper's own intervals were
implausibly narrow).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from llmforge.console import UserError
from llmforge.plan.scaling_laws import LossLaw

HUBER_DELTA = 1e-3
GRID = {
    "a": np.arange(0, 26, 5.0),
    "b": np.arange(0, 26, 5.0),
    "e": np.arange(-1, 2, 0.5),
    "alpha": np.arange(0, 2.5, 0.5),
    "beta": np.arange(0, 2.5, 0.5),
}
NAMES = ("E", "A", "B", "alpha", "beta")
# The Huber objective is tiny (residuals ~1e-3), so scipy's default tolerances would stop at the start point.
_LBFGS = {"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000}


def _huber(r: np.ndarray) -> np.ndarray:
    small = np.abs(r) <= HUBER_DELTA
    return np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA))


def _objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray
) -> tuple[float, np.ndarray]:
    """Huber loss of the log-space residuals and its gradient in θ = (a, b, e, α, β)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_l
    weights /= total
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
    grad = np.array(
        [
            (slope * weights[0]).sum(),
            (slope * weights[1]).sum(),
            (slope * weights[2]).sum(),
            -(slope * weights[0] * log_n).sum(),
            -(slope * weights[1] * log_d).sum(),
        ]
    )
    return float(_huber(residual).sum()), grad


def _grid_starts(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, count: int) -> np.ndarray:
    grid = np.array(list(itertools.product(*GRID.values())))  # (points, 5) in (a, b, e, α, β) order
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    losses = _huber(pred - log_l).sum(axis=1)
    return grid[np.argsort(losses)[:count]]


def _fit_once(
    log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, starts: int, also: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Best L-BFGS fit from the `starts` best grid points (and `also`, when given)."""
    from scipy.optimize import minimize

    points = _grid_starts(log_n, log_d, log_l, starts) if starts else np.empty((0, 5))
    if also is not None:
        points = np.vstack([also, points])
    best, best_value = None, np.inf
    for start in points:
        result = minimize(
            _objective, start, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B", options=_LBFGS
        )
        if result.fun < best_value:
            best, best_value = result.x, result.fun
    return best, best_value


def _law(theta: np.ndarray) -> LossLaw:
    a, b, e, alpha, beta = theta
    return LossLaw(
        E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha), beta=float(beta)
    )


@dataclass
class FitResult:
    law: LossLaw
    objective: float
    intervals: dict[str, tuple[float, float]]
    runs: int
    bootstrap: int

    def to_dict(self) -> dict:
        law = self.law
        return {
            "E": law.E,
            "A": law.A,
            "B": law.B,
            "alpha": law.alpha,
            "beta": law.beta,
            "params_exponent": law.params_exponent,
            "tokens_exponent": 1 - law.params_exponent,
            "intervals_95": {k: list(v) for k, v in self.intervals.items()},
            "huber_objective": self.objective,
            "runs": self.runs,
            "bootstrap_resamples": self.bootstrap,
        }


def fit_scaling_law(
    params: np.ndarray,
    tokens: np.ndarray,
    losses: np.ndarray,
    *,
    starts: int = 8,
    bootstrap: int = 100,
    seed: int = 0,
    on_resample=None,
) -> FitResult:
    """Fit E, A, B, α, β; 95% percentile intervals from `bootstrap` resamples (each refit started from the full
    fit).

    `on_resample()` is called after each bootstrap refit (for a progress bar)."""
    params, tokens, losses = (np.asarray(x, dtype=float) for x in (params, tokens, losses))
    if len(params) < 5:
        raise UserError(f"need at least 5 runs to fit 5 constants (E, A, B, α, β), got {len(params)}")
    if np.any(params <= 0) or np.any(tokens <= 0) or np.any(losses <= 0) or not np.all(np.isfinite(losses)):
        raise UserError("runs: params, tokens and losses must all be positive and finite")
    log_n, log_d, log_l = np.log(params), np.log(tokens), np.log(losses)
    theta, value = _fit_once(log_n, log_d, log_l, starts)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(params), len(params))
        boot, _ = _fit_once(log_n[idx], log_d[idx], log_l[idx], 0, also=theta)
        law = _law(boot)
        samples.append([law.E, law.A, law.B, law.alpha, law.beta])
        if on_resample:
            on_resample()
    intervals = {}
    if samples:
        lo, hi = np.percentile(np.array(samples), [2.5, 97.5], axis=0)
        intervals = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(NAMES)}
    return FitResult(_law(theta), value, intervals, len(params), bootstrap)


def isoflop_groups(params: np.ndarray, tokens: np.ndarray, gap_dex: float = 0.1) -> list[np.ndarray]:
    """Indices of runs grouped by compute C = 6·N·D: a new group starts where log10 C jumps by more than `gap_dex`."""
    log_c = np.log10(6 * np.asarray(params) * np.asarray(tokens))
    order = np.argsort(log_c)
    groups, current = [], [order[0]]
    for prev, idx in itertools.pairwise(order):
        if log_c[idx] - log_c[prev] > gap_dex:
            groups.append(np.array(current))
            current = []
        current.append(idx)
    groups.append(np.array(current))
    return groups
