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


def objective_tokens(
    path: Path, n: int = 40_000, sentinels: int = 16, seed: int = 0, repeat_words: bool = False
) -> Path:
    """`markov_tokens`' stream over the 64 words of a word-level tokenizer written by the tokenize stage's own
    code (mask token, `sentinels` sentinels at the top), documents of 50 tokens; the index names the
    tokenizer and records mask_id and sentinel_ids as `tokenize encode` does. `repeat_words`: each document
    repeats one random word instead (a masked word is known from any other word of its document, without
    positions, which a tiny encoder with learned positions takes thousands of steps to use)."""
    from llmforge.tokenizer.build import finish, new_tokenizer
    from llmforge.tokenizer.config import TokenizerConfig
    from llmforge.tokenizer.encode import sentinel_ids
    from llmforge.tokenizer.train import save_pretrained

    cfg = TokenizerConfig.model_validate(
        {"algorithm": "word", "vocab_size": 128, "special_tokens": {"sentinels": sentinels}}
    )
    tok, trainer = new_tokenizer(cfg)
    words = [f"w{i}" for i in range(64)]
    tok.train_from_iterator([" ".join(words)] * 3, trainer=trainer)
    tok = finish(tok, cfg)
    tokenizer = path.parent / f"{path.name}-tokenizer"
    tokenizer.mkdir(parents=True)
    save_pretrained(tok, cfg, tokenizer)
    write_manifest(tokenizer, "tokenizer")

    rng = np.random.default_rng(seed)
    succ = rng.integers(0, 64, size=(64, 2))
    state, stream = 0, []
    eos = tok.token_to_id(cfg.special_tokens.eos)
    word_id = [tok.token_to_id(w) for w in words]
    for i in range(n):
        if repeat_words:
            state = rng.integers(0, 64) if i % 50 == 0 else state
        else:
            state = succ[state, rng.integers(0, 2)]
        stream.append(eos if i % 50 == 49 else word_id[state])
    ids = np.asarray(stream, dtype=np.int64)
    cut = int(n * 0.9)
    tokens = write_tokens(path, ids[:cut], ids[cut:], vocab_size=tok.get_vocab_size(), eos_id=eos)
    index = json.loads((tokens / "index.json").read_text())
    index.update(
        tokenizer_path=str(tokenizer.resolve()),
        mask_id=tok.token_to_id(cfg.special_tokens.mask),
        sentinel_ids=sentinel_ids(tok),
    )
    (tokens / "index.json").write_text(json.dumps(index))
    write_manifest(tokens, "tokens")
    return tokens
