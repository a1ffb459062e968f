"""The shared accelerator table (`hardware.json`): dense peak FLOP/s per dtype and memory per device.

`plan` uses it for training time, cost and memory fit; `pretrain` for MFU (model FLOPs utilisation,
Chowdhery et al. 2022 "PaLM", Appendix B: achieved model FLOP/s over the device's peak). Pure JSON, no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE = Path(__file__).with_name("hardware.json")


@dataclass(frozen=True)
class Accelerator:
    name: str
    memory_gb: float
    dense_tflops: dict[str, float]
    source: str
    device_names: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def half_precision(self) -> str:
        """The 16-bit dtype its tensor cores run: bf16 where supported, else fp16 (e.g. V100)."""
        return "bf16" if "bf16" in self.dense_tflops else "fp16"

    def peak_flops(self, dtype: str) -> float | None:
        tflops = self.dense_tflops.get(dtype)
        return None if tflops is None else tflops * 1e12


@cache
def _table() -> dict:
    return json.loads(TABLE.read_text())


@cache
def accelerators() -> dict[str, Accelerator]:
    return {
        name: Accelerator(name=name, **{**row, "device_names": tuple(row.get("device_names", ()))})
        for name, row in _table()["accelerators"].items()
    }


def _normalise(device_name: str) -> str:
    return " ".join(device_name.split()).casefold()


def by_device_name(device_name: str) -> Accelerator | None:
    """The accelerator that lists exactly this device name (torch.cuda.get_device_name()), else None.

    Exact, not by substring: "NVIDIA L40" is not an L4, "H100 NVL" not an H100 SXM, and an unknown
    name is reported as unknown rather than given the peak of the nearest-looking row."""
    wanted = _normalise(device_name)
    for accelerator in accelerators().values():
        if any(_normalise(name) == wanted for name in accelerator.device_names):
            return accelerator
    return None
