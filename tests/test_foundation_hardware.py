"""The shared accelerator table: one source for plan's cost/memory and pretrain's MFU."""

from __future__ import annotations

import pytest

from llmforge.hardware import accelerators, by_device_name


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA H200 NVL", "h200-nvl"),
        ("NVIDIA B200", "b200"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L40", "l40"),
        ("NVIDIA L4", "l4"),
        ("AMD Instinct MI300X", "mi300x"),
    ],
)
def test_device_names_match_exactly_not_by_substring(device_name, expected):
    """Substring matching took "NVIDIA L40" for the L4, "H100 NVL" for the H100 SXM and
    "A100-SXM4-80GB" for the 40 GB card."""
    assert by_device_name(device_name).name == expected


def test_device_names_ignore_case_and_spacing_only():
    assert by_device_name("nvidia  h100 80GB HBM3").name == "h100-sxm"
    assert by_device_name("NVIDIA H100") is None  # not a name torch reports: unknown, not the nearest row


def test_every_device_name_belongs_to_one_row_with_a_source():
    seen = [name.casefold() for a in accelerators().values() for name in a.device_names]
    assert len(seen) == len(set(seen))
    assert all(a.source for a in accelerators().values())


def test_unknown_device_and_peaks():
    assert by_device_name("Some Future GPU") is None
    h100 = accelerators()["h100-sxm"]
    assert h100.peak_flops("bf16") == pytest.approx(989.4e12)
    assert h100.memory_bytes == 80e9
    assert accelerators()["v100-32gb"].half_precision == "fp16"
