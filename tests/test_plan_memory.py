"""Memory model: Rajbhandari et al. 2020 (ZeRO, Figure 1) and Korthikanti et al. 2022 (activations, Eq. 2)."""

from __future__ import annotations

import pytest

from llmforge.plan.memory import activation_bytes_per_layer, bytes_per_param, plan_memory


@pytest.mark.parametrize(("zero", "gb"), [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_7_5b_on_64_gpus(zero, gb):
    plan = plan_memory(7.5e9, gpus=64, zero=zero)
    assert round(plan.states["model_states"] / 1e9, 1) == gb


def test_bytes_per_param():
    assert bytes_per_param("bf16-mixed", "adamw").total == 16
    assert bytes_per_param("fp32", "adamw").total == 16
    assert bytes_per_param("bf16-mixed", "adamw-8bit").total == 2 + 2 + 4 + 2
    assert bytes_per_param("fp32", "sgd").total == 12
    assert bytes_per_param("bf16", "adamw").total == 8


def test_activations_korthikanti_eq2_and_recompute():
    s, b, h, a = 2048, 1, 4096, 32
    none = activation_bytes_per_layer(seq=s, micro_batch=b, hidden=h, heads=a)
    assert none == s * b * h * (34 + 5 * a * s / h)
    assert (
        activation_bytes_per_layer(seq=s, micro_batch=b, hidden=h, heads=a, checkpointing="selective")
        == 34 * s * b * h
    )
    assert (
        activation_bytes_per_layer(seq=s, micro_batch=b, hidden=h, heads=a, checkpointing="full")
        == 2 * s * b * h
    )
    assert activation_bytes_per_layer(seq=s, micro_batch=b, hidden=h, heads=a, tensor_parallel=8) == none / 8


def test_total_and_fits():
    plan = plan_memory(1e9, layers=16, hidden=2048, heads=16, seq=1024, micro_batch=4, gpu_memory_bytes=80e9)
    assert plan.total_bytes == plan.states["model_states"] + plan.activation_bytes
    assert plan.activation_bytes == 16 * activation_bytes_per_layer(
        seq=1024, micro_batch=4, hidden=2048, heads=16
    )
    assert plan.fits is True
    assert plan_memory(7e9, gpu_memory_bytes=80e9).fits is False  # 112 GB of model states
    assert plan_memory(1e9).to_dict()["rule_of_thumb_bytes"] == 24e9


def test_recomputation_holds_one_layer_again_and_the_logits_are_counted_with_the_vocabulary():
    """Measured on CPU (benchmarks/bench_memory.py): without these terms an 8-layer recomputing run was
    under-counted by 65% and a 4-layer one with an 8k vocabulary by 57%."""
    from llmforge.plan.memory import activation_bytes, logits_bytes

    shape = {"seq": 512, "micro_batch": 8, "hidden": 512, "heads": 8}
    whole = activation_bytes_per_layer(**shape)
    assert activation_bytes(8, **shape) == 8 * whole
    full = activation_bytes(8, **shape, checkpointing="full")
    assert full == 8 * activation_bytes_per_layer(**shape, checkpointing="full") + whole - 2 * 512 * 8 * 512
    assert logits_bytes(seq=512, micro_batch=8, vocab=8192) == 3 * 4 * 512 * 8 * 8192
    with_vocab = plan_memory(3e7, layers=8, hidden=512, heads=8, seq=512, micro_batch=8, vocab=8192)
    without = plan_memory(3e7, layers=8, hidden=512, heads=8, seq=512, micro_batch=8)
    assert without.logits_bytes is None
    assert with_vocab.total_bytes - without.total_bytes == logits_bytes(seq=512, micro_batch=8, vocab=8192)
