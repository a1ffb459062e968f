"""Pretraining on one GPU: a ~350M-parameter llama in bf16 with SDPA + torch.compile, sharded with FSDP2 in
one process (torchrun), against a hand-written loop of the same model, batch and precision. Target: MFU ≥ 0.45
on an H100 (#7).

Three runs, one after the other on the same device:
- `trainer_fsdp`: `torchrun --nproc_per_node 1 -m llmforge pretrain` with train.distributed.strategy = "fsdp";
- `trainer_plain`: `llmforge pretrain` in one plain process (no process group, Accelerate only);
- `hand_loop`: nanoGPT-style — autocast(bf16), torch.compile, fused AdamW, no Accelerate, no FSDP.
Each is timed over its optimizer steps after the first `SKIP` (compilation and allocator warm-up); the median
step gives tokens/s and MFU (exact FLOPs per token incl. attention, over the dense bf16 peak from
llmforge/hardware.json). Peak memory is `torch.cuda.max_memory_allocated`.

Without CUDA the benchmark is skipped and writes nothing (so `make bench` on a CPU machine keeps the GPU
numbers recorded earlier). `run(**SMOKE)` runs the same harness on CPU with a tiny model (tests use it).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# 24 × 1024 llama with a 32k vocabulary: 335M parameters (tied embeddings).
SHAPE = {
    "arch": "llama",
    "n_layers": 24,
    "d_model": 1024,
    "n_heads": 16,
    "ffn_dim": 2752,
    "max_seq_len": 2048,
}
FULL: dict[str, Any] = {
    "shape": SHAPE,
    "vocab": 32000,
    "seq": 2048,
    "micro": 8,
    "rows": 64,
    "steps": 30,
    "skip": 10,
    "compile": True,
}
SMOKE: dict[str, Any] = {
    "shape": {"arch": "llama", "n_layers": 2, "d_model": 64, "n_heads": 2, "max_seq_len": 64},
    "vocab": 512,
    "seq": 64,
    "micro": 4,
    "rows": 8,
    "steps": 6,
    "skip": 2,
    "compile": False,
    "require_cuda": False,
}


def _tokens(root: Path, vocab: int, n: int) -> Path:
    """A Zipfian token stream (real text's rank-frequency shape) written as a tokens artifact."""
    from llmforge.artifacts import write_manifest

    ids = np.random.default_rng(0).zipf(1.2, size=n) % vocab
    cut = int(n * 0.95)
    path = root / "tokens"
    splits = {}
    for split, part in (("train", ids[:cut]), ("val", ids[cut:])):
        (path / split).mkdir(parents=True)
        part.astype(np.uint16).tofile(path / split / "00000.bin")
        splits[split] = {
            "tokens": len(part),
            "documents": 1,
            "shards": [{"file": f"{split}/00000.bin", "tokens": len(part), "documents": 1}],
        }
    index = {"format": 1, "dtype": "uint16", "vocab_size": vocab, "eos_id": 0, "splits": splits}
    (path / "index.json").write_text(json.dumps(index))
    write_manifest(path, "tokens")
    return path


def _recipe(root: Path, name: str, cfg: dict[str, Any], strategy: str) -> Path:
    import tomli_w

    recipe = {
        "run": {"name": name, "out_dir": str(root), "seed": 0},
        "model": cfg["shape"],
        "train": {
            "seq_len": cfg["seq"],
            "global_batch_tokens": cfg["rows"] * cfg["seq"],
            "micro_batch": cfg["micro"],
            "max_steps": cfg["steps"],
            "lr": 3e-4,
            "warmup_steps": 5,
            "precision": "bf16-mixed",
            "compile": cfg["compile"],
            "eval_every": 1_000_000,
            "eval_tokens": cfg["seq"] * cfg["micro"],
            "checkpoint_every": 1_000_000,
            "log_every": 1,
            "distributed": {"strategy": strategy},
        },
    }
    path = root / f"{name}.toml"
    path.write_text(tomli_w.dumps(recipe))
    return path


def _trainer(root: Path, tokens: Path, cfg: dict[str, Any], name: str, strategy: str) -> dict[str, Any]:
    """One `llmforge pretrain` run in a subprocess; its per-step metrics after `skip`."""
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] if strategy == "fsdp" else []
    )
    recipe = _recipe(root, name, cfg, strategy)
    cmd = [
        sys.executable,
        *launcher,
        "-m",
        "llmforge",
        "--quiet",
        "pretrain",
        str(recipe),
        "--tokens",
        str(tokens),
    ]
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: llmforge pretrain exited {done.returncode}: {done.stderr[-2000:]}")
    rows = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if "tokens_per_s" in r and r["step"] > cfg["skip"]]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "peak_mem_bytes": max(r["peak_mem"] for r in timed),
        "final_loss": timed[-1]["loss"],
    }


def _hand_loop(tokens: Path, cfg: dict[str, Any], device: str) -> dict[str, Any]:
    """The minimal loop: random windows from a memmap, autocast bf16 forward, fp32 cross-entropy, backward
    over `rows / micro` micro-batches, clip, fused AdamW. Median step time after `skip`."""
    import torch
    import torch.nn.functional as F

    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model

    model = build_model(ModelConfig(**cfg["shape"]), vocab_size=cfg["vocab"], eos_id=0, seed=0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    forward = torch.compile(model) if cfg["compile"] else model
    data = np.memmap(tokens / "train" / "00000.bin", dtype=np.uint16, mode="r")
    seq, micro, accum = cfg["seq"], cfg["micro"], cfg["rows"] // cfg["micro"]
    rng = np.random.default_rng(0)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(cfg["steps"]):
        start = time.perf_counter()
        for _ in range(accum):
            starts = rng.integers(0, len(data) - seq - 1, size=micro)
            rows = np.stack([data[s : s + seq + 1] for s in starts]).astype(np.int64)
            batch = torch.from_numpy(rows).to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                logits = forward(input_ids=batch[:, :-1]).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # waits for the device, as the trainer's per-step loss does
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    del model, opt, forward
    if cuda:
        torch.cuda.empty_cache()
    return {
        "tokens_per_s": cfg["rows"] * seq / statistics.median(times[cfg["skip"] :]),
        "peak_mem_bytes": peak,
        "final_loss": loss.item(),
    }


def run(**overrides: Any) -> dict[str, Any]:
    import torch

    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.metrics import device_peak
    from llmforge.pretrain.model import build_model, model_size

    cfg = {**FULL, **overrides}
    cuda = torch.cuda.is_available()
    if not cuda and cfg.get("require_cuda", True):
        return {"skipped": "no CUDA device: run `python -m benchmarks.run pretrain_gpu` on a GPU machine"}
    device = "cuda" if cuda else "cpu"
    size = model_size(build_model(ModelConfig(**cfg["shape"]), cfg["vocab"], 0, seed=0), cfg["seq"])
    measured = device_peak("bf16-mixed")
    peak, device_name = measured.flops, measured.device
    n_tokens = (cfg["steps"] + 2) * cfg["rows"] * (cfg["seq"] + 1) * 21 // 20
    root = Path(tempfile.mkdtemp(prefix="bench-pretrain-gpu-"))
    try:
        tokens = _tokens(root, cfg["vocab"], n_tokens)
        runs = {
            "trainer_fsdp": _trainer(root, tokens, cfg, "fsdp", "fsdp"),
            "trainer_plain": _trainer(root, tokens, cfg, "plain", "ddp"),
            "hand_loop": _hand_loop(tokens, cfg, device),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for result in runs.values():
        result["mfu"] = size.flops_per_token * result["tokens_per_s"] / peak if peak else None
    hand = runs["hand_loop"]["tokens_per_s"]
    return {
        "device": device_name,
        "torch": torch.__version__,
        "model": cfg["shape"],
        "vocab_size": cfg["vocab"],
        "params": size.params,
        "flops_per_token": size.flops_per_token,
        "seq_len": cfg["seq"],
        "micro_batch": cfg["micro"],
        "batch_tokens": cfg["rows"] * cfg["seq"],
        "precision": "bf16-mixed",
        "compile": cfg["compile"],
        "steps": cfg["steps"],
        "timed_steps": cfg["steps"] - cfg["skip"],
        "peak_flops": peak,
        "peak_flops_source": measured.source,
        "runs": runs,
        "ratio_fsdp_to_hand": runs["trainer_fsdp"]["tokens_per_s"] / hand,
        "ratio_plain_to_hand": runs["trainer_plain"]["tokens_per_s"] / hand,
        "target_mfu": 0.45,
    }
