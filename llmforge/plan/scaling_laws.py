"""Compute-optimal sizing: given one of compute C, parameters N or tokens D, the other two (C ≈ 6·N·D).

Every method is traceable to a paper:

- `chinchilla` — Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), approach 1
  (training-curve envelope, Table 2: N_opt ∝ C^0.50). The paper does not print the coefficient, so the power law
  N_opt = G·C^a is pinned to the two ends of its Table 3 (400M params / 8.0B tokens and 10T params / 216.2T tokens,
  C = 6·N·D). That reproduces the 400M, 1T and 10T rows to their printed digits and the 1B, 10B, 175B, 280B
  and 520B rows within 1.5%; the 67B row is the exception (1.39T tokens and 5.6e23 FLOPs against the printed
  1.5T and 5.76e23, 7% fewer tokens: that row's FLOPs are Gopher's budget, not 6·N·D of its tokens).
- `approach2` — Hoffmann et al. 2022 approach 2 (IsoFLOP profiles, Table 2: a = 0.49), pinned to its projection
  for Gopher's budget (5.76e23 FLOPs → 63B parameters, Table A3).
- `approach3` — Hoffmann et al. 2022 approach 3, the parametric loss L(N, D) = E + A/N^α + B/D^β (Eq. 2) with the
  paper's E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28, minimised under C = 6ND in closed form (Eq. 4).
- `epoch` — Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt"), their refit of approach 3 on
  the data reconstructed from Hoffmann et al.'s Figure 4: E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478,
  β = 0.3658.
- `kaplan` — Kaplan et al. 2020 ("Scaling Laws for Neural Language Models"), Figure 14 / Eq. 6.1:
  N_opt = 1.3e9 · (C / PF-day)^0.73 (N counts non-embedding parameters).
- `tokens-per-param` — the rule of thumb D = r·N (r = 20 ≈ Chinchilla).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PF_DAY = 1e15 * 86400  # FLOPs in one petaflop/s-day
FLOPS_PER_PARAM_TOKEN = 6  # C ≈ 6·N·D (Kaplan et al. 2020 §2.1; Hoffmann et al. 2022 §3)


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    @property
    def params_exponent(self) -> float:
        """a in N_opt ∝ C^a: β/(α+β) (Hoffmann et al. 2022, Eq. 4)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def coefficient(self) -> float:
        """G = (αA / βB)^(1/(α+β)) in N_opt = G·(C/6)^a (Hoffmann et al. 2022, Eq. 4)."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))

    def optimal_params(self, flops: float) -> float:
        return self.coefficient * (flops / FLOPS_PER_PARAM_TOKEN) ** self.params_exponent


HOFFMANN_APPROACH3 = LossLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
BESIROGLU_2024 = LossLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


@dataclass(frozen=True)
class PowerLaw:
    """N_opt = G · C^a, D_opt = C / (6·N_opt)."""

    G: float
    a: float

    def optimal_params(self, flops: float) -> float:
        return self.G * flops**self.a

    @classmethod
    def through(cls, a: float, flops: float, params: float) -> PowerLaw:
        return cls(G=params / flops**a, a=a)


def _approach1() -> PowerLaw:
    (n0, d0), (n1, d1) = (
        (400e6, 8.0e9),
        (10e12, 216.2e12),
    )  # Hoffmann et al. 2022, Table 3, first and last rows
    c0, c1 = 6 * n0 * d0, 6 * n1 * d1
    a = math.log(n1 / n0) / math.log(c1 / c0)
    return PowerLaw.through(a, c0, n0)


APPROACH1 = _approach1()
APPROACH2 = PowerLaw.through(0.49, 5.76e23, 63e9)
KAPLAN = PowerLaw(G=1.3e9 / PF_DAY**0.73, a=0.73)

POWER_LAWS: dict[str, PowerLaw] = {"chinchilla": APPROACH1, "approach2": APPROACH2, "kaplan": KAPLAN}
LOSS_LAWS: dict[str, LossLaw] = {"approach3": HOFFMANN_APPROACH3, "epoch": BESIROGLU_2024}
METHODS = ("chinchilla", "approach2", "approach3", "epoch", "kaplan", "tokens-per-param")


@dataclass(frozen=True)
class Allocation:
    method: str
    params: float
    tokens: float
    flops: float
    loss: float | None

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "params": self.params,
            "tokens": self.tokens,
            "flops": self.flops,
            "tokens_per_param": self.tokens_per_param,
            "loss": self.loss,
        }


def allocate(
    method: str,
    *,
    flops: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    ratio: float = 20.0,
) -> Allocation:
    """The compute-optimal (N, D, C) under `method`, given exactly one of flops, params, tokens."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if sum(x is not None for x in (flops, params, tokens)) != 1:
        raise ValueError("give exactly one of flops, params, tokens")
    if method == "tokens-per-param":  # D = r·N, so C = 6·r·N²
        if params is None:
            params = (
                tokens / ratio if tokens is not None else math.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * ratio))
            )
        flops = FLOPS_PER_PARAM_TOKEN * ratio * params**2
    else:
        g, a = _power_law(method)
        if flops is None:  # invert N = g·C^a, or D = C/(6·g·C^a) = C^(1-a)/(6g)
            flops = (
                (params / g) ** (1 / a)
                if params is not None
                else (FLOPS_PER_PARAM_TOKEN * g * tokens) ** (1 / (1 - a))
            )
        params = g * flops**a
    tokens = flops / (FLOPS_PER_PARAM_TOKEN * params)
    law = LOSS_LAWS.get(method)
    return Allocation(method, params, tokens, flops, law.loss(params, tokens) if law else None)


def _power_law(method: str) -> tuple[float, float]:
    """(g, a) with N_opt = g·C^a; a loss law's N_opt = G·(C/6)^a is rewritten as (G·6^-a)·C^a."""
    if method in POWER_LAWS:
        return POWER_LAWS[method].G, POWER_LAWS[method].a
    law = LOSS_LAWS[method]
    return law.coefficient * FLOPS_PER_PARAM_TOKEN**-law.params_exponent, law.params_exponent
