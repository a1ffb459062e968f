"""Inference-aware sizing (Sardana et al. 2023, "Beyond Chinchilla-Optimal: Accounting for Inference in
Language Model Scaling Laws", §2, Eq. 3): reach the same loss ℓ with the smallest *lifetime* compute

    minimise 6·N·D_train + 2·N·D_inference   subject to   L(N, D_train) = ℓ,

using the parametric loss L(N, D) = E + A/N^α + B/D^β. With inference demand the optimum is a smaller model
trained on more tokens than the Chinchilla-optimal one of the same loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmforge.plan.scaling_laws import FLOPS_PER_PARAM_TOKEN, LossLaw

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2  # one forward pass (Sardana et al. 2023, §2)


@dataclass(frozen=True)
class InferenceAwarePlan:
    params: float
    tokens: float
    loss: float
    inference_tokens: float
    training_flops: float
    inference_flops: float
    baseline_total_flops: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "tokens": self.tokens,
            "tokens_per_param": self.tokens / self.params,
            "loss": self.loss,
            "inference_tokens": self.inference_tokens,
            "training_flops": self.training_flops,
            "inference_flops": self.inference_flops,
            "total_flops": self.total_flops,
            "baseline_total_flops": self.baseline_total_flops,
            "saving": 1 - self.total_flops / self.baseline_total_flops,
        }


def tokens_for_loss(law: LossLaw, params: float, loss: float) -> float:
    """D with L(N, D) = loss (infinite when N alone cannot reach it)."""
    gap = loss - law.E - law.A / params**law.alpha
    return (law.B / gap) ** (1 / law.beta) if gap > 0 else math.inf


def lifetime_flops(law: LossLaw, params: float, loss: float, inference_tokens: float) -> float:
    tokens = tokens_for_loss(law, params, loss)
    return (
        FLOPS_PER_PARAM_TOKEN * params * tokens + INFERENCE_FLOPS_PER_PARAM_TOKEN * params * inference_tokens
    )


def inference_aware(
    law: LossLaw, params: float, tokens: float, inference_tokens: float
) -> InferenceAwarePlan:
    """The (N, D) reaching the loss of the training-optimal (params, tokens) at the least lifetime compute.

    Lifetime compute grows without bound both towards the smallest model that can reach the loss at all and
    towards infinitely large ones, and is unimodal in log N between: golden-section search on log N, up to
    1000× `params` (with inference demand the optimum is smaller than the training-optimal model).
    """
    loss = law.loss(params, tokens)
    smallest = (law.A / (loss - law.E)) ** (1 / law.alpha)
    lo, hi = math.log(smallest) + 1e-9, math.log(params * 1e3)
    ratio = (math.sqrt(5) - 1) / 2

    def cost(log_n: float) -> float:
        return lifetime_flops(law, math.exp(log_n), loss, inference_tokens)

    for _ in range(200):
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if cost(m1) <= cost(m2):
            hi = m2
        else:
            lo = m1
    best = math.exp((lo + hi) / 2)
    best_tokens = tokens_for_loss(law, best, loss)
    baseline = lifetime_flops(law, params, loss, inference_tokens)
    return InferenceAwarePlan(
        params=best,
        tokens=best_tokens,
        loss=loss,
        inference_tokens=inference_tokens,
        training_flops=FLOPS_PER_PARAM_TOKEN * best * best_tokens,
        inference_flops=INFERENCE_FLOPS_PER_PARAM_TOKEN * best * inference_tokens,
        baseline_total_flops=baseline,
    )
