"""Tiny `tokens` artifacts for the pretrain tests, written exactly per `llmforge.artifacts.tokens`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmforge.artifacts import write_manifest


def write_tokens(path: Path, train: np.ndarray, val: np.ndarray, vocab_size: int, eos_id: int) -> Path:
    """A tokens artifact with one shard per split (uint16 ids)."""
    path.mkdir(parents=True)
    splits = {}
    for split, ids in (("train", train), ("val", val)):
        (path / split).mkdir()
        ids.astype(np.uint16).tofile(path / split / "00000.bin")
        docs = int((ids == eos_id).sum())
        splits[split] = {
            "tokens": len(ids),
            "documents": docs,
            "shards": [{"file": f"{split}/00000.bin", "tokens": len(ids), "documents": docs}],
        }
    index = {"format": 1, "dtype": "uint16", "vocab_size": vocab_size, "eos_id": eos_id, "splits": splits}
    (path / "index.json").write_text(json.dumps(index))
    write_manifest(path, "tokens")
    return path


def shakespeare_bytes(shared_data: Path, path: Path) -> Path:
    """Byte-level tokens (vocab 257, EOS 256) of tinyshakespeare: 90% train, 10% val."""
    data = np.frombuffer((shared_data / "tinyshakespeare" / "input.txt").read_bytes(), dtype=np.uint8)
    ids = np.append(data.astype(np.uint16), 256)
    cut = int(len(ids) * 0.9)
    return write_tokens(path, ids[:cut], ids[cut:], vocab_size=257, eos_id=256)


def markov_tokens(path: Path, vocab_size: int = 64, n: int = 40_000, seed: int = 0) -> Path:
    """A learnable stream: each token picks its successor from 2 fixed choices (conditional entropy
    ln 2 against a near-uniform unigram entropy)."""
    rng = np.random.default_rng(seed)
    succ = rng.integers(0, vocab_size - 1, size=(vocab_size, 2))
    ids = np.empty(n, dtype=np.int64)
    ids[0] = 0
    choice = rng.integers(0, 2, size=n)
    for i in range(1, n):
        ids[i] = succ[ids[i - 1], choice[i]]
    cut = int(n * 0.9)
    return write_tokens(path, ids[:cut], ids[cut:], vocab_size=vocab_size, eos_id=vocab_size - 1)


def write_recipe(
    path: Path, out_dir: Path, name: str = "t", model: dict | None = None, train: dict | None = None
) -> Path:
    """A recipe for a tiny llama on `markov_tokens`-sized data; `model`/`train` override its keys (a `model`
    with `init_from` replaces the shape keys)."""
    import tomli_w

    shape = {"arch": "llama", "n_layers": 2, "d_model": 32, "n_heads": 2, "max_seq_len": 32}
    recipe = {
        "run": {"name": name, "out_dir": str(out_dir), "seed": 7},
        "model": model if model and "init_from" in model else {**shape, **(model or {})},
        "train": {
            "seq_len": 32,
            "global_batch_tokens": 256,
            "micro_batch": 4,
            "max_steps": 30,
            "lr": 1e-2,
            "warmup_steps": 3,
            "eval_every": 10,
            "eval_tokens": 1024,
            "checkpoint_every": 10,
            "log_every": 1,
            **(train or {}),
        },
    }
    path.write_text(tomli_w.dumps(recipe))
    return path
