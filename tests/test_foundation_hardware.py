"""The shared accelerator table: one source for plan's cost/memory and pretrain's MFU."""

from __future__ import annotations

import pytest

from llmforge.hardware import accelerators, by_device_name, cpu_core_peak_flops


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
    ],
)
def test_device_names_pick_the_most_specific_entry(device_name, expected):
    assert by_device_name(device_name).name == expected


def test_a100_is_not_mistaken_for_a10():
    assert by_device_name("NVIDIA A100-SXM4-80GB").dense_tflops["bf16"] == 312


def test_unknown_device_and_peaks():
    assert by_device_name("Some Future GPU") is None
    h100 = accelerators()["h100-sxm"]
    assert h100.peak_flops("bf16") == pytest.approx(989.4e12)
    assert h100.memory_bytes == 80e9
    assert accelerators()["v100-32gb"].half_precision == "fp16"
    assert cpu_core_peak_flops("fp32") == 80e9
