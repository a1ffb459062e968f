"""Throughput and utilisation: device peak FLOP/s, MFU, peak memory, `metrics.jsonl`, the loss/LR plot."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

_PRECISION_DTYPE = {"fp32": "fp32", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}


def device_peak_flops(precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s of one device at `precision`, device name); None when the GPU is not in the table."""
    import torch

    from llmforge.hardware import by_device_name, cpu_core_peak_flops

    dtype = _PRECISION_DTYPE[precision]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        device = by_device_name(name)
        return (device.peak_flops(dtype) if device else None), name
    threads = torch.get_num_threads()
    return cpu_core_peak_flops(dtype) * threads, f"cpu ({threads} threads)"


def peak_memory_bytes() -> int:
    """Peak allocated GPU memory, or the process's peak resident set size on CPU."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


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


def tracker_config(tables: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Recipe tables flattened to `train.spike.sigma`-style keys with scalar values, the only kind
    TensorBoard's hparams accept (None is left out, lists become their text)."""
    flat: dict[str, Any] = {}
    for key, value in tables.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(tracker_config(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = str(value)
        elif value is not None:
            flat[name] = value
    return flat


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(records: list[dict[str, Any]], out: Path, unigram_entropy: float | None = None) -> None:
    """Training and validation loss (with the unigram entropy for scale), and the learning rate, against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "lr" in r]
    val = [r for r in train if r.get("val_loss") is not None]
    spikes = [
        r
        for r in records
        if r.get("event") == "spike" and r["loss"] == r["loss"] and abs(r["loss"]) != float("inf")
    ]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=1)
    if val:
        ax_loss.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="val")
    if spikes:
        ax_loss.plot(
            [r["step"] + 1 for r in spikes], [r["loss"] for r in spikes], "rx", label="spike (dropped)"
        )
    if unigram_entropy is not None:
        ax_loss.axhline(unigram_entropy, color="grey", ls="--", lw=1, label="unigram entropy")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.plot([r["step"] for r in train], [r["lr"] for r in train], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
