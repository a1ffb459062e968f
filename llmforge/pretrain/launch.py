"""Process-level setup of a run: the Accelerator (devices, precision, process group, trackers) and the
signal handling that turns SIGTERM/SIGINT into "checkpoint, then stop"."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from llmforge.pretrain.config import TrainConfig


def make_accelerator(train: TrainConfig, run_dir: Path) -> Any:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps its settings in a process-wide singleton; a second run in the same process (a
    # notebook, the benchmark, tests) may ask for another precision. The process group is kept.
    AcceleratorState._reset_state()
    precision = {"fp32": "no", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}[train.precision]
    if train.distributed.strategy == "fsdp":  # FSDP's own mixed-precision policy casts (parallel.py)
        precision = "no"
    kwargs: dict[str, Any] = {}
    if train.report_to != "none":
        kwargs.update(log_with=train.report_to, project_dir=str(run_dir / "trackers"))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision, **kwargs)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"Accelerate started {accelerator.num_processes} process(es) but WORLD_SIZE={world}: launch with "
            f"torchrun or `accelerate launch --multi_gpu` (`accelerate launch --cpu` runs one process)"
        )
    return accelerator


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
