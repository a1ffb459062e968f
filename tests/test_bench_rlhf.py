"""The rlhf benchmark's core at a minimal size: for the reward model, DPO, RLOO and GRPO, ours and bare trl train
the same steps on the same examples (the same batches: their per-step losses, and the online trainers'
rewards, agree), the ratios are ours / bare, and PPO's rollout and update figures are there beside trl RLOO's.
Nothing here is timed against a threshold."""

from __future__ import annotations

import math

import pytest

from benchmarks import bench_rlhf as bench

SIZES = {
    "rows": 40,
    "batch": 4,
    "reward_steps": 3,
    "dpo_steps": 3,
    "online_steps": 3,
    "ppo_steps": 2,
    "num_generations": 2,
    "response_length": 8,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # ~25 s alone on the shared 2-core machine (8 trainer runs, one PPO run, the stages' reports)
def test_ours_and_bare_trl_train_the_same_batches_and_the_figures_are_consistent(tmp_path, shared_data):
    policy = bench.build_policy(tmp_path / "policy", n_layers=1, d_model=32, n_heads=2, ffn_dim=64, vocab=300)
    result = bench.benchmark(tmp_path, policy, SIZES, rounds=1)

    steps = {"reward": 3, "dpo": 3, "rloo": 3, "grpo": 3}
    assert set(result["trainers"]) == set(steps)
    for kind, r in result["trainers"].items():
        ours, bare = r["ours"], r["bare"]
        assert ours["steps"] == bare["steps"] == steps[kind], kind
        assert ours["steady_steps"] == bare["steady_steps"] == steps[kind] - 1, kind
        assert ours["train_examples"] == bare["train_examples"] > 0, kind
        assert r["same_steps"] and r["same_examples"], kind
        assert r["max_loss_diff"] <= 1e-5, kind  # same weights, batches, order and precision (fp32)
        for side in (ours, bare):
            assert side["samples_per_s"] > 0 and side["trl_samples_per_s"] > 0, kind
            assert math.isclose(side["samples_per_s"], side["steps_per_s"] * SIZES["batch"], rel_tol=1e-9)
        assert math.isclose(
            r["ratio_samples_per_s"], ours["samples_per_s"] / bare["samples_per_s"], rel_tol=1e-9
        )
        assert math.isclose(
            r["ratio_trl_samples_per_s"], ours["trl_samples_per_s"] / bare["trl_samples_per_s"], rel_tol=1e-9
        )
        assert r["meets_target"] == (r["ratio_samples_per_s"] >= bench.TARGET)
        assert result["ratios"][kind] == r["ratio_samples_per_s"]

    for kind in bench.ONLINE_TRAINERS:
        r = result["trainers"][kind]
        assert r["max_reward_diff"] <= 1e-6, kind  # the same sampled completions on both sides
        for side in (r["ours"], r["bare"]):
            assert side["rollout_tokens_per_s"] > 0 and side["update_s"] > 0, kind

    ppo = result["ppo_vs_rloo"]
    assert ppo["ppo"]["steps"] == SIZES["ppo_steps"]
    assert ppo["ppo"]["rollout_tokens_per_s"] > 0 and ppo["ppo"]["update_s"] > 0
    rloo = result["trainers"]["rloo"]["bare"]
    assert ppo["rloo_trl"]["rollout_tokens_per_s"] == rloo["rollout_tokens_per_s"]
    assert math.isclose(
        ppo["ppo_over_rloo_rollout_tokens_per_s"],
        ppo["ppo"]["rollout_tokens_per_s"] / rloo["rollout_tokens_per_s"],
        rel_tol=1e-9,
    )
    assert result["all_meet_target"] == all(r["meets_target"] for r in result["trainers"].values())
