"""Accelerators (peak FLOP/s and memory from the shared table `llmforge/hardware.json`) and the wall-clock time and cost of a training run.

time = C / (K · peak · MFU), where MFU (model FLOPs utilisation, Chowdhery et al. 2022 "PaLM", Appendix B) is
the fraction of the dense 16-bit peak a run actually achieves (~0.3–0.5 for well-tuned large runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmforge.console import UserError
from llmforge.hardware import Accelerator, accelerators
from llmforge.plan.scaling_laws import PF_DAY

Gpu = Accelerator


def gpu_table() -> dict[str, Gpu]:
    return accelerators()


def gpu(name: str) -> Gpu:
    table = gpu_table()
    if name not in table:
        raise UserError(f"--gpu {name}: unknown GPU; choose one of {', '.join(table)}")
    return table[name]


@dataclass(frozen=True)
class TrainingCost:
    gpu: str | None
    gpus: int
    mfu: float
    peak_tflops: float
    flops: float
    price_per_gpu_hour: float | None

    @property
    def seconds(self) -> float:
        return self.flops / (self.gpus * self.peak_tflops * 1e12 * self.mfu)

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.gpus / 3600

    @property
    def cost_usd(self) -> float | None:
        return None if self.price_per_gpu_hour is None else self.gpu_hours * self.price_per_gpu_hour

    def to_dict(self) -> dict:
        return {
            "gpu": self.gpu,
            "gpus": self.gpus,
            "mfu": self.mfu,
            "peak_tflops": self.peak_tflops,
            "days": self.seconds / 86400,
            "gpu_hours": self.gpu_hours,
            "pf_days": self.flops / PF_DAY,
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "cost_usd": self.cost_usd,
        }


def training_cost(
    flops: float,
    *,
    gpu_name: str | None,
    gpus: int = 1,
    mfu: float = 0.4,
    peak_tflops: float | None = None,
    price_per_gpu_hour: float | None = None,
) -> TrainingCost:
    """Wall-clock time and cost on `gpus` accelerators; `peak_tflops` overrides the GPU table."""
    if peak_tflops is None:
        if gpu_name is None:
            raise UserError(
                "--gpus/--mfu/--price need --gpu NAME or --peak-tflops; GPUs: " + ", ".join(gpu_table())
            )
        device = gpu(gpu_name)
        peak_tflops = device.dense_tflops[device.half_precision]
    return TrainingCost(gpu_name, gpus, mfu, peak_tflops, flops, price_per_gpu_hour)
