"""The arithmetic of PPO-RLHF as pure torch functions (no models, no state), each unit-tested.

Sources, cited per function:
- Huang et al. 2024, "The N+ implementation details of RLHF with PPO: a case study on TL;DR summarization"
  (numbered here, not as in the paper: detail 1 score at the last token, 2 KL in the reward, 3 returns before
  whitening, 4 masked whitening, 5 clipped losses, 6 truncation at EOS, 7 adaptive KL, 8 temperature, dropout,
  left padding and value-head init);
- Ziegler et al. 2019, "Fine-tuning language models from human preferences" (per-token KL penalty, the
  adaptive KL controller);
- Schulman 2020, "Approximating KL divergence" (the k1 and k3 estimators);
- Schulman et al. 2016 (GAE) and 2017 (PPO's clipped surrogate).

Shapes: B rows, R response tokens. A response mask is True on real response tokens (the stop token
included) and False on the padding after it; masks are right-padded prefixes (what `truncate_at_stop` makes).
"""

from __future__ import annotations

from typing import Literal

import torch

WHITEN_EPS = 1e-8


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where `mask` is True (all of them, or along `dim`)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased (Bessel-corrected) variance over the valid positions, as trl's `masked_var`; 0 with fewer
    than two valid positions (no spread to estimate)."""
    n = mask.sum()
    if n < 2:
        return values.new_zeros(())
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask) * n / (n - 1)


def truncate_at_stop(
    responses: torch.Tensor, stop_ids: list[int], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each sampled reply after its first stop token (Huang et al. detail 6: what follows EOS is not the
    reply, and must neither be scored nor trained). The stop token itself stays, and counts as a reply token
    (the policy must learn to emit it). Returns (responses with pad after the stop, response mask, has_stop);
    has_stop is False for a reply that ran to the length limit without a stop token."""
    is_stop = torch.isin(responses, torch.as_tensor(stop_ids, device=responses.device))
    has_stop = is_stop.any(dim=1)
    # stops seen strictly before each position: 0 up to and including the first stop
    before = is_stop.long().cumsum(dim=1) - is_stop.long()
    mask = before == 0
    return responses.masked_fill(~mask, pad_id), mask, has_stop


def score_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real response token: where the sequence score is credited (detail 1: the
    reward model reads the whole reply, so its score belongs to the reply's last token). A row with no real
    token (which `truncate_at_stop` never makes: the first sampled token is always kept) gets index 0; its
    rewards are masked out anyway, so the score is dropped rather than credited to padding."""
    positions = torch.arange(response_mask.shape[1], device=response_mask.device)
    return (positions * response_mask.long()).max(dim=1).values


def kl_per_token(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: Literal["k1", "k3"] = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) on tokens sampled from π (Schulman 2020).

    k1 = log π − log π_ref: unbiased, can be negative per token. k3 = (r − 1) − log r with
    r = π_ref/π: unbiased and never negative (log r ≤ r − 1), lower variance."""
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        log_ratio = ref_logprobs - logprobs
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (expected 'k1' or 'k3')")


def per_token_rewards(
    score: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kl_in: Literal["reward", "loss"] = "reward",
) -> torch.Tensor:
    """The reward of each reply token (Ziegler et al. 2019 §2.2; Huang et al. details 1-2).

    kl_in = "reward": every valid token gets −β·KL_t, and the sequence score is added at the last real token.
    kl_in = "loss": the KL goes into the policy loss instead, so the rewards hold only the score.
    Masked positions are 0."""
    rewards = -kl_coef * kl if kl_in == "reward" else torch.zeros_like(kl)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards = rewards.clone()
    rewards[rows, score_index(mask)] += score.to(rewards.dtype)
    return rewards * mask.to(rewards.dtype)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values − mean) / std over the valid tokens only (detail 4: padding must not move the statistics).
    shift_mean=False adds the mean back (trl's reward whitening: rescale, keep the sign of the mean).
    Masked positions are 0. With fewer than two valid tokens there is no std: values are only centred."""
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    if mask.sum() < 2:
        whitened = values - mean
    else:
        whitened = (values - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over the reply tokens.

    δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}; after the last valid token V = 0 and A = 0 (the
    episode ends there: padding values and rewards are zeroed so they do not leak in). Returns (advantages,
    returns) with returns = advantages + values, computed before the advantages are whitened (detail 3)."""
    m = mask.to(values.dtype)
    rewards, values = rewards * m, values * m
    length = rewards.shape[1]
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * m


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017), a masked mean over tokens (detail 5):
    max(−A·ρ, −A·clip(ρ, 1 ± ε)) with ρ = π/π_old. Returns (loss, clip fraction = share of tokens where the
    clipped term is the larger one, approx_kl = ½·mean((log ρ)²), trl's estimate of KL(π_old‖π))."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
    approx_kl = 0.5 * masked_mean(log_ratio**2, mask)
    return loss, clipfrac, approx_kl


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (detail 5, as OpenAI's lm-human-preferences and trl):
    ½·mean(max((V − R)², (clip(V, V_old ± ε_v) − R)²)). Returns (loss, clip fraction)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(values.dtype), mask)
    return loss, clipfrac


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log π(token) under the distribution the tokens were sampled from: the logits divided by the sampling
    temperature (detail 8; without it the ratio and KL are measured against another policy)."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-position entropy (nats) of the temperature-scaled distribution: logsumexp(z) − Σ p·z."""
    z = logits.float() / temperature
    p = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (p * z).sum(-1)


def left_pad_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions for left-padded rows (detail 8): the first real token is position 0, whatever the padding
    before it; pad positions get 0 (they are masked out)."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


class FixedKLController:
    """A constant β."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019 §2.2 (detail 7): a proportional controller steering the KL to `target`:
    err = clip(KL/target − 1, −0.2, 0.2), β ← β·(1 + err·n/horizon), with n the rollout samples of the step."""

    def __init__(self, init: float, target: float, horizon: int):
        super().__init__(init)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        err = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + err * n_steps / self.horizon
