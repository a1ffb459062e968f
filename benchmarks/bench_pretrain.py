"""Pretraining throughput: our trainer against a minimal hand-written PyTorch loop, same model, data,
batch, precision (fp32) and optimizer, in the same process. Target: ratio ≥ 0.9.

Both are timed over their optimizer steps only (data loading included, evaluation and checkpoint writing
left out); the two are run alternately ROUNDS times and the best round of each is kept, to damp the noise of
a shared 2-core machine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = 12
ROUNDS = 3
MODEL = {"arch": "llama", "n_layers": 4, "d_model": 128, "n_heads": 4, "max_seq_len": 256}
TRAIN = {
    "seq_len": 256,
    "global_batch_tokens": 8192,
    "micro_batch": 8,
    "max_steps": STEPS,
    "lr": 3e-3,
    "warmup_steps": 5,
    "eval_every": 10_000,
    "eval_tokens": 256,
    "checkpoint_every": 10_000,
    "log_every": 10_000,
}


def _tokens(root: Path) -> Path:
    import json

    from llmforge.artifacts import write_manifest

    rng = np.random.default_rng(0)
    ids = rng.zipf(1.3, size=400_000) % 4096  # a Zipfian stream, vocabulary 4096
    path = root / "tokens"
    for split, part in (("train", ids[:360_000]), ("val", ids[360_000:])):
        (path / split).mkdir(parents=True)
        part.astype(np.uint16).tofile(path / split / "00000.bin")
    splits = {
        s: {"tokens": n, "documents": 1, "shards": [{"file": f"{s}/00000.bin", "tokens": n, "documents": 1}]}
        for s, n in (("train", 360_000), ("val", 40_000))
    }
    index = {"format": 1, "dtype": "uint16", "vocab_size": 4096, "eos_id": 0, "splits": splits}
    (path / "index.json").write_text(json.dumps(index))
    write_manifest(path, "tokens")
    return path


def _trainer(root: Path, tokens: Path, name: str) -> float:
    from llmforge.console import configure
    from llmforge.pretrain.run import run_pretraining
    from llmforge.recipe import validate_recipe

    configure(quiet=True)
    recipe = validate_recipe(
        {"run": {"name": name, "out_dir": str(root), "seed": 0}, "model": MODEL, "train": TRAIN}
    )
    return run_pretraining(recipe, tokens).results["tokens_per_s"]


def _hand_loop(tokens: Path) -> float:
    """nanoGPT-style: windows from a memmap, forward, cross-entropy, backward, clip, AdamW step."""
    import torch
    import torch.nn.functional as F

    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model

    model = build_model(ModelConfig(**MODEL), vocab_size=4096, eos_id=0, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    data = np.memmap(tokens / "train" / "00000.bin", dtype=np.uint16, mode="r")
    seq, micro, accum = 256, 8, 4
    rng = np.random.default_rng(0)
    elapsed = 0.0
    for _ in range(STEPS):
        start = time.perf_counter()
        for _ in range(accum):
            starts = rng.integers(0, len(data) - seq - 1, size=micro)
            batch = torch.from_numpy(np.stack([data[s : s + seq + 1] for s in starts]).astype(np.int64))
            logits = model(input_ids=batch[:, :-1]).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        elapsed += time.perf_counter() - start
    return STEPS * 8192 / elapsed


def run() -> dict:
    import torch

    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.metrics import device_peak
    from llmforge.pretrain.model import build_model, model_size

    root = Path(tempfile.mkdtemp(prefix="bench-pretrain-"))
    try:
        tokens = _tokens(root)
        ours, hand = [], []
        for i in range(ROUNDS):
            hand.append(_hand_loop(tokens))
            ours.append(_trainer(root, tokens, f"run{i}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    size = model_size(build_model(ModelConfig(**MODEL), vocab_size=4096, eos_id=0, seed=0), seq_len=256)
    measured = device_peak("fp32")
    peak, device = measured.flops, measured.device
    best_ours, best_hand = max(ours), max(hand)
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "model": MODEL,
        "params": size.params,
        "flops_per_token": size.flops_per_token,
        "batch_tokens": 8192,
        "precision": "fp32",
        "steps": STEPS,
        "trainer_tokens_per_s": [round(x) for x in ours],
        "hand_loop_tokens_per_s": [round(x) for x in hand],
        "trainer_mfu": size.flops_per_token * best_ours / peak,
        "hand_loop_mfu": size.flops_per_token * best_hand / peak,
        "peak_flops": peak,
        "ratio": best_ours / best_hand,
        "target_ratio": 0.9,
    }
