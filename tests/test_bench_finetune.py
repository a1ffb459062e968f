"""The finetune benchmark's core at a minimal size: ours and bare trl train the same steps on the same tokens
(the same batches: their per-step losses agree), and the result carries the ratios the issue asks for."""

from __future__ import annotations

import math

import pytest

from benchmarks import bench_finetune as bench


@pytest.mark.slow  # ~26 s alone on the shared 2-core machine (imports, BPE, the stage's report)
def test_ours_and_bare_trl_train_the_same_batches_and_the_ratios_are_reported(tmp_path, shared_data):
    base = bench.build_base(tmp_path / "base", n_layers=1, d_model=32, n_heads=2, ffn_dim=64, vocab=300)
    result = bench.compare(tmp_path, base, steps=3, rounds=1, rows=40, batch=2, lora=False)
    assert {"ours", "bare", "ratio_samples_per_s", "ratio_tokens_per_s", "trainable_params"} <= set(result)
    ours, bare = result["ours"], result["bare"]
    assert ours["steps"] == bare["steps"] == 3
    assert ours["tokens"] == bare["tokens"] > 3 * 2  # non-pad tokens of the same 6 examples
    assert result["same_steps"] and result["same_tokens"]
    assert result["max_loss_diff"] <= 1e-5  # same weights, batches, order and precision (fp32)
    for side in (ours, bare):
        assert side["samples_per_s"] > 0 and side["tokens_per_s"] > side["samples_per_s"]
    assert math.isclose(
        result["ratio_samples_per_s"], ours["samples_per_s"] / bare["samples_per_s"], rel_tol=1e-9
    )
