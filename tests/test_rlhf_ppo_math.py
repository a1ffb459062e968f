"""The arithmetic of PPO-RLHF (llmforge/rlhf/ppo_math.py) against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from llmforge.rlhf import ppo_math as pm


def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> bool:
    return torch.allclose(actual.double(), torch.as_tensor(expected, dtype=torch.float64), atol=atol)


def test_truncation_keeps_the_stop_token_and_pads_after_it():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9], [4, 3, 2, 9]])
    padded, mask, has_stop = pm.truncate_at_stop(responses, stop_ids=[2, 3], pad_id=0)
    assert padded.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0], [4, 3, 0, 0]]
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
        [True, True, False, False],
    ]
    assert has_stop.tolist() == [True, False, True, True]


def test_score_index_is_the_last_unmasked_position():
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    _, mask, _ = pm.truncate_at_stop(responses, [2], pad_id=0)
    assert pm.score_index(mask).tolist() == [1, 3, 0]  # the EOS itself, the length limit, a lone EOS
    assert pm.score_index(torch.tensor([[True, True, True, False], [False] * 4])).tolist() == [2, 0]


def test_k1_and_k3_on_known_numbers_and_k3_is_never_negative():
    logp = torch.tensor([math.log(0.5), math.log(0.25)])
    ref = torch.tensor([math.log(0.25), math.log(0.5)])
    assert close(pm.kl_per_token(logp, ref, "k1"), [math.log(2), -math.log(2)])
    # r = ref/π: 0.5 → (0.5 − 1) − log 0.5 ; 2 → (2 − 1) − log 2
    assert close(pm.kl_per_token(logp, ref, "k3"), [-0.5 + math.log(2), 1 - math.log(2)])
    torch.manual_seed(0)
    a, b = torch.randn(1000) * 3, torch.randn(1000) * 3
    assert (pm.kl_per_token(a, b, "k3") >= 0).all()
    assert (pm.kl_per_token(a, b, "k1") < 0).any()
    with pytest.raises(ValueError, match="k2"):
        pm.kl_per_token(a, b, "k2")


def _reward_inputs():
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    kl = torch.tensor([[0.1, -0.2, 0.3, 5.0], [0.4, 0.5, -0.6, 0.7]])
    score = torch.tensor([2.0, -1.0])
    return score, kl, mask


def test_kl_in_reward_puts_minus_beta_kl_on_every_token_and_adds_the_score_at_the_last():
    score, kl, mask = _reward_inputs()
    rewards = pm.per_token_rewards(score, kl, mask, kl_coef=0.5, kl_in="reward")
    assert close(rewards, [[-0.05, 0.1, -0.15 + 2.0, 0.0], [-0.2, -0.25, 0.3, -0.35 - 1.0]])
    idx = pm.score_index(mask)
    non_score = rewards.clone()
    non_score[torch.arange(2), idx] -= score
    assert close(non_score.sum(), -0.5 * (kl * mask).sum())
    assert rewards[0, 3] == 0  # padding gets nothing, not even its KL


def test_kl_in_loss_puts_no_kl_in_the_rewards():
    score, kl, mask = _reward_inputs()
    rewards = pm.per_token_rewards(score, kl, mask, kl_coef=0.5, kl_in="loss")
    assert close(rewards, [[0, 0, 2.0, 0], [0, 0, 0, -1.0]])


def test_gae_matches_a_hand_computation():
    # γ = 1, λ = 0.95; δ_t = r_t + V_{t+1} − V_t, A_t = δ_t + 0.95·A_{t+1}, V after the last token = 0
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 0.2]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    advantages, returns = pm.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # A3 = 1 − 0.2 = 0.8; A2 = (0.2 − 0.3) + 0.95·0.8 = 0.66; A1 = −0.1 + 0.95·0.66 = 0.527;
    # A0 = −0.1 + 0.95·0.527 = 0.40065
    assert close(advantages, [[0.40065, 0.527, 0.66, 0.8]])
    assert close(returns, [[0.90065, 0.927, 0.96, 1.0]])
    assert close(returns, advantages + values)


def test_gae_with_a_mask_ignores_rewards_and_values_of_padding():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0]])
    mask = torch.tensor([[True, True, True, False]])
    advantages, returns = pm.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # the last real token's next value is 0, not the pad's 7: A2 = 1 − 0.3 = 0.7;
    # A1 = (0.3 − 0.4) + 0.95·0.7 = 0.565; A0 = −0.1 + 0.95·0.565 = 0.43675
    assert close(advantages, [[0.43675, 0.565, 0.7, 0.0]])
    assert close(returns, [[0.93675, 0.965, 1.0, 0.0]])


def test_gae_discount():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.0, 0.0]])
    advantages, _ = pm.gae(rewards, values, torch.ones(1, 2, dtype=torch.bool), gamma=0.5, lam=1.0)
    assert close(advantages, [[0.5, 1.0]])


def test_whitening_uses_the_valid_tokens_only():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -50.0, 100.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    other_padding = torch.where(mask, values, torch.full_like(values, -1e4))
    white = pm.whiten(values, mask)
    assert close(white, pm.whiten(other_padding, mask))
    valid = white[mask]
    assert abs(valid.mean().item()) < 1e-6
    assert valid.var(unbiased=True).item() == pytest.approx(1.0, abs=1e-5)  # unbiased, as trl's masked_var
    assert (white[~mask] == 0).all()
    # by hand: valid values 1..5, mean 3, unbiased var 2.5
    assert close(white[mask], (torch.tensor([1.0, 2, 3, 4, 5]) - 3) / math.sqrt(2.5), atol=1e-5)
    kept = pm.whiten(values, mask, shift_mean=False)
    assert kept[mask].mean().item() == pytest.approx(3.0, abs=1e-5)


def test_masked_mean():
    values = torch.tensor([[1.0, 2.0, 30.0], [4.0, 50.0, 60.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert pm.masked_mean(values, mask).item() == pytest.approx(7 / 3)
    assert close(pm.masked_mean(values, mask, dim=1), [1.5, 4.0])


def test_policy_loss_clips_as_by_hand():
    # ratios e^{±0.5} with advantages ±1; a fifth, masked token with absurd numbers must not count
    logprobs = torch.tensor([[0.5, -0.5, 0.5, -0.5, 40.0]])
    old = torch.zeros(1, 5)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1e6]])
    mask = torch.tensor([[True, True, True, True, False]])
    loss, clipfrac, approx_kl = pm.policy_loss(logprobs, old, advantages, mask, cliprange=0.2)
    up, down = math.exp(0.5), math.exp(-0.5)
    # per token max(−A·ρ, −A·clip(ρ, 0.8, 1.2)): −1.2 (clipped), −ρ_down, ρ_up, 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 - down + up + 0.8) / 4, abs=1e-6)
    assert clipfrac.item() == pytest.approx(0.5)
    assert approx_kl.item() == pytest.approx(0.5 * 0.25)


def test_value_loss_clips_as_by_hand():
    values = torch.tensor([[1.0, 0.0, 0.0, 99.0]])
    old = torch.tensor([[0.5, 0.1, 1.0, 0.0]])
    returns = torch.tensor([[0.0, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, clipfrac = pm.value_loss(values, old, returns, mask, cliprange_value=0.2)
    # (V−R)² vs (clip(V, old ± 0.2) − R)²: max(1, 0.49) = 1; 0.25 both; max(0, 0.8²) = 0.64 (clipped)
    assert loss.item() == pytest.approx(0.5 * (1 + 0.25 + 0.64) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)


def test_temperature_scales_the_logits_before_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    tokens = torch.randint(0, 7, (2, 3))
    at_two = pm.logprobs_from_logits(logits, tokens, temperature=2.0)
    expected = torch.log_softmax(logits / 2.0, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert close(at_two, expected)
    assert not close(at_two, pm.logprobs_from_logits(logits, tokens, temperature=1.0), atol=1e-3)
    p = torch.softmax(logits / 0.5, -1)
    assert close(pm.entropy_from_logits(logits, 0.5), -(p * p.log()).sum(-1), atol=1e-5)
    assert close(pm.entropy_from_logits(torch.zeros(1, 7), 0.7), [math.log(7)])


def test_left_padded_positions_start_at_zero_on_the_first_real_token():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]])
    assert pm.left_pad_position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 1, 2, 2]]


def test_adaptive_kl_controller_moves_beta_towards_the_target_by_at_most_20_percent_error():
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(12.0, n_steps=8)  # KL/target − 1 = 1 → capped at 0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 8 / 10_000))
    before = ctl.value
    ctl.update(3.0, n_steps=8)  # −0.5 → capped at −0.2
    assert ctl.value == pytest.approx(before * (1 - 0.2 * 8 / 10_000))
    before = ctl.value
    ctl.update(7.0, n_steps=8)  # 1/6: inside the cap
    assert ctl.value == pytest.approx(before * (1 + (1 / 6) * 8 / 10_000))
    copy = pm.AdaptiveKLController(0.5, target=6.0, horizon=10_000)
    copy.load_state_dict(ctl.state_dict())
    assert copy.value == ctl.value
    fixed = pm.FixedKLController(0.05)
    fixed.update(100.0, 8)
    assert fixed.value == 0.05
