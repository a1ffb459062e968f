"""LR schedules, batch ramp, spike guard and model sizing: pure functions, no training."""

from __future__ import annotations

import math

import pytest

from llmforge.pretrain.config import ModelConfig, SpikeGuardConfig, TrainConfig
from llmforge.pretrain.schedule import batch_rows_at, lr_at
from llmforge.spike_guard import SpikeGuard


def cfg(**kw) -> TrainConfig:
    base = dict(
        lr=1.0,
        warmup_steps=10,
        max_steps=110,
        min_lr_ratio=0.1,
        seq_len=8,
        global_batch_tokens=64,
        micro_batch=1,
    )
    return TrainConfig(**{**base, **kw})


def test_warmup_is_linear_then_cosine_reaches_floor():
    c = cfg(schedule="cosine")
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(60, c) == pytest.approx(0.55)  # half way down the cosine: floor + (peak-floor)/2
    assert lr_at(110, c) == pytest.approx(0.1)
    assert lr_at(500, c) == pytest.approx(0.1)


def test_wsd_is_flat_until_the_decay_fraction_then_linear():
    c = cfg(schedule="wsd", decay_fraction=0.2)  # decay over steps 88..110
    assert lr_at(50, c) == 1.0 and lr_at(87, c) == 1.0
    assert lr_at(99, c) == pytest.approx(1.0 - 0.9 * 11 / 22)
    assert lr_at(110, c) == pytest.approx(0.1)


def test_linear_constant_and_inverse_sqrt():
    assert lr_at(60, cfg(schedule="linear")) == pytest.approx(1.0 - 0.9 * 0.5)
    assert lr_at(100, cfg(schedule="constant")) == 1.0
    assert lr_at(39, cfg(schedule="inverse-sqrt")) == pytest.approx(math.sqrt(10 / 40))
    assert lr_at(10_000, cfg(schedule="inverse-sqrt")) == pytest.approx(0.1)


def test_batch_ramp_grows_in_whole_micro_batches():
    c = cfg(global_batch_tokens=64 * 8, batch_ramp_tokens=1000, batch_ramp_start_tokens=64)  # 8 → 64 rows
    assert batch_rows_at(0, c, row_multiple=4) == 8
    assert batch_rows_at(500, c, row_multiple=4) == 36  # 8 + 56/2
    assert batch_rows_at(999, c, row_multiple=4) % 4 == 0
    assert batch_rows_at(1000, c, row_multiple=4) == 64
    assert batch_rows_at(0, cfg(), row_multiple=1) == 8  # no ramp


def test_spike_guard_flags_outliers_and_non_finite_but_not_noise():
    guard = SpikeGuard(SpikeGuardConfig(sigma=6, window=20, min_history=10))
    for x in [3.0 + 0.05 * math.sin(i) for i in range(30)]:
        assert not guard.check(x).spike
        guard.accept(x)
    assert guard.check(4.0).spike
    assert guard.check(float("nan")).spike
    assert guard.check(float("inf")).spike
    assert not guard.check(3.02).spike
    assert len(guard.history) == 20  # spikes never entered the window


def test_dropped_update_with_non_finite_grad_norm_stays_out_of_the_spike_window():
    """check(loss) added the loss to the window before check_grad_norm dropped the update."""
    guard = SpikeGuard(SpikeGuardConfig(min_history=2), [3.0, 3.1, 2.9])
    assert not guard.check(3.05).spike
    assert guard.check_grad_norm(float("inf")).spike
    assert list(guard.history) == [3.0, 3.1, 2.9]
    guard.accept(3.05)  # an applied update
    assert list(guard.history) == [3.0, 3.1, 2.9, 3.05]


def test_spike_guard_waits_for_history():
    guard = SpikeGuard(SpikeGuardConfig(min_history=5))
    assert not any(guard.check(x).spike for x in (10.0, 1.0, 50.0, 2.0))


def test_bad_batch_arithmetic_is_rejected_by_the_recipe():
    with pytest.raises(ValueError, match="micro_batch = 3 must divide"):
        cfg(micro_batch=3)
    with pytest.raises(ValueError, match="multiple of train.seq_len"):
        cfg(global_batch_tokens=65)
    with pytest.raises(ValueError, match="must divide model.d_model"):
        ModelConfig(d_model=64, n_heads=5)


def test_flops_per_token_counts_every_matmul_and_attention():
    from llmforge.pretrain.model import build_model, model_size

    cfg_ = ModelConfig(arch="llama", n_layers=2, d_model=32, n_heads=2, ffn_dim=64, max_seq_len=16)
    size = model_size(build_model(cfg_, vocab_size=100, eos_id=0, seed=0), seq_len=16)
    per_layer = 4 * 32 * 32 + 3 * 32 * 64  # q,k,v,o + gate,up,down
    assert size.non_embedding_params == 2 * per_layer + 2 * 2 * 32 + 32  # + RMSNorm gains
    assert size.params == size.non_embedding_params + 100 * 32  # tied head
    assert size.flops_per_token == 6 * (2 * per_layer + 100 * 32) + 12 * 2 * 32 * 16


@pytest.mark.parametrize("arch", ["llama", "gpt-neox", "gpt2"])
def test_residual_projections_get_scaled_init(arch):
    import torch

    from llmforge.archs import family
    from llmforge.pretrain.model import build_model

    model = build_model(
        ModelConfig(arch=arch, n_layers=8, d_model=64, n_heads=4), vocab_size=64, eos_id=0, seed=0
    )
    names = family(arch).residual_projections
    is_scaled = {n: n.removesuffix(".weight").endswith(names) for n, _ in model.named_parameters()}
    scaled = [p for n, p in model.named_parameters() if is_scaled[n]]
    others = [p for n, p in model.named_parameters() if p.dim() == 2 and not is_scaled[n]]
    assert len(scaled) == 16
    assert torch.cat([p.flatten() for p in scaled]).std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert torch.cat([p.flatten() for p in others]).std().item() == pytest.approx(0.02, rel=0.05)
