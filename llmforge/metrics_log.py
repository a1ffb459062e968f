"""What every training stage records the same way: `metrics.jsonl` (append-only, rewound on resume) and the
peak memory of the run (shared by pretrain and finetune)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any


def peak_memory_bytes() -> int:
    """Peak allocated GPU memory, or the process's peak resident set size on CPU (since the last
    `reset_peak_memory` where the OS allows a reset: Linux's VmHWM)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    hwm = _vm_hwm()
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def reset_peak_memory() -> None:
    """Start the peak over (GPU: torch's counter; Linux: VmHWM via /proc/self/clear_refs), so a stage can report
    the peak of its training loop rather than of loading and preparing."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _vm_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MetricsLog:
    """Append-only `metrics.jsonl`; on resume, lines after the checkpoint's step are dropped first so the
    file reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is None:
            path.write_text("")
        else:
            self.truncate(resume_step)

    def truncate(self, step: int) -> None:
        """Forget records after `step` (the run went back to that step's checkpoint)."""
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> float:
    try:
        return json.loads(line).get("step", float("inf"))
    except json.JSONDecodeError:  # a line cut short by a kill
        return float("inf")
