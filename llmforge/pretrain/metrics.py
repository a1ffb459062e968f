"""Throughput and utilisation: device peak FLOP/s, MFU, peak memory, `metrics.jsonl`, the loss/LR plot."""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.metrics_log import MetricsLog, peak_memory_bytes  # noqa: F401  (re-exported)

_PRECISION_DTYPE = {"fp32": "fp32", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}
CPU_PEAK_FILE = "cpu-peak.json"


@dataclass(frozen=True)
class Peak:
    """The peak FLOP/s of one device that MFU divides by, and where that number came from."""

    flops: float | None  # None: unknown, so MFU is not reported
    device: str
    source: str


def device_peak(precision: str, configured: float | None = None) -> Peak:
    """`train.peak_flops` when given; else the GPU's row in hardware.json (matched by exact name); on CPU a
    matmul measured once per machine and cached."""
    import torch

    from llmforge.hardware import by_device_name

    dtype = _PRECISION_DTYPE[precision]
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    if configured is not None:
        return Peak(configured, device, "train.peak_flops")
    if not torch.cuda.is_available():
        flops, source = cpu_peak_flops(dtype, torch.get_num_threads())
        return Peak(flops, device, source)
    row = by_device_name(device)
    if row is None or row.peak_flops(dtype) is None:
        why = "not in llmforge/hardware.json" if row is None else f"has no {dtype} peak in hardware.json"
        return Peak(None, device, f"unknown: {device!r} {why}; set train.peak_flops to report MFU")
    return Peak(row.peak_flops(dtype), device, f"hardware.json {row.name} ({row.source})")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmforge"


def cpu_peak_flops(dtype: str, threads: int) -> tuple[float, str]:
    """(FLOP/s of a square matmul at `dtype` with `threads` threads, its description). Measured once per
    process and cached per CPU model, thread count, dtype and torch version; the cache keeps the best value
    seen, so one measurement taken while other work loaded the machine does not stick (MFU would read high).
    Every rank calls this (the trainer sets up its peak on each), but only LOCAL_RANK 0 measures once a
    value is cached: ranks measuring at once would share the cores."""
    import torch

    key = f"{_cpu_model()} | {threads} threads | {dtype} | torch {torch.__version__}"
    path = cache_dir() / CPU_PEAK_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    previous = cached.get(key) if isinstance(cached.get(key), (int, float)) else 0.0
    measure = os.environ.get("LOCAL_RANK", "0") == "0" or not previous
    best = max(previous, _measured_once(dtype, threads)) if measure else previous
    if best != previous:
        cached[key] = best
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cached, indent=1) + "\n")
            tmp.replace(path)
        except OSError:  # a read-only home: measure again next time
            pass
    return float(best), f"best {dtype} matmul measured on this CPU, cached in {path}"


@functools.cache
def _measured_once(dtype: str, threads: int) -> float:
    return measure_matmul_flops(dtype)


def measure_matmul_flops(dtype: str, budget_s: float = 0.3) -> float:
    """Best FLOP/s of an n×n matmul, n grown until one product takes ~1/10 of `budget_s` (at most 2048;
    fp16 on CPU is ~1000× slower than fp32, so it stays small). Each size is run once untimed first: the
    first product of a dtype and shape pays for kernel selection, which would stop the growth at n = 128."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    n = 128
    while True:
        a, b = torch.randn(n, n).to(torch_dtype), torch.randn(n, n).to(torch_dtype)
        seconds = _best_matmul_time(a, b, repeats=3)
        if seconds > budget_s / 10 or n >= 2048:
            break
        n *= 2
    best = _best_matmul_time(a, b, repeats=max(3, int(budget_s / max(seconds, 1e-6))))
    return 2 * n**3 / best


def _best_matmul_time(a: Any, b: Any, repeats: int) -> float:
    a @ b  # untimed: kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
