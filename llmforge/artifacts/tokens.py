"""The `tokens` contract: flat binary token shards plus `index.json`.

Layout::

    tokens/
      manifest.json
      index.json          {"format": 1, "dtype": "uint16", "vocab_size": V, "eos_id": E,
                           "bos_id": B or null, "pad_id": P or null, "mask_id": M or null,
                           "sentinel_ids": [S0, S1, …],
                           "tokenizer_path": "/abs/runs/x/tokenizer", "tokenizer_hash": "sha256:…",
                           "split": {"by": "origin_document", "val_fraction": f, "rule": "…"},
                           "splits": {"train": {"tokens": N, "documents": D,
                                                "shards": [{"file": "train/00000.bin", "tokens": n,
                                                            "documents": d, "max_id": m}]},
                                      "val": {...}},
                           "sources": {"stdlib": {"train_tokens": n, "val_tokens": m, "documents": d}}}
      train/00000.bin …   little-endian uint16 (vocab ≤ 65536) or uint32 ids, EOS after every document
      val/00000.bin …

Written by `llmforge tokenize encode` (`llmforge.tokenizer.encode`). Readers require `dtype`, `vocab_size`,
`eos_id` and `splits`; the other keys are there whenever that command wrote the artifact. `split` says which
documents the val split holds (every copy of an origin document is in one split; see its `rule`).
`mask_id` (the tokenizer's mask token, for masked LM) and `sentinel_ids` (`sentinel_ids[k]` is the id of
`<extra_id_k>`, for span corruption; [] without sentinels) are missing from artifacts written before
they were added: readers treat them as optional (`index.get("mask_id")`, `index.get("sentinel_ids", [])`).

`validate_tokens` checks the shards against the index, and that every id is below `vocab_size`: cheaply from
each shard's `max_id` (its largest id, -1 when empty, recorded at encode time), so a start reads no token. An
index without `max_id` (older artifacts, hand-written ones), and `scan=True` (`llmforge inspect --verify`),
read every id instead (one pass of `max` over the memory map, remembered per file while it is unchanged)
and check the recorded `max_id` too. A same-size damaged shard passes the cheap check (as it passes the size
check); `TokenShards.read` refuses an id ≥ `vocab_size` in what it returns, before an embedding sees it.

`TokenShards` memory-maps one split as one long token stream; `TokenWindows` cuts it into fixed windows
for training (seeded shuffle per epoch, deterministic per-rank sharding, resumable from a cursor).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.console import UserError

INDEX = "index.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
SCAN_TOKENS = 1 << 24  # ids read per step of the id check (32-64 MB)
_max_ids: dict[tuple[str, int, int], int] = {}  # (file, size, mtime_ns) → its largest id


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab ≤ 65536), uint32 otherwise."""
    if vocab_size <= 0:
        raise ValueError("vocab_size must be positive")
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def read_index(path: str | Path) -> dict[str, Any]:
    f = Path(path) / INDEX
    if not f.is_file():
        raise UserError(f"{path}: tokens artifact has no {INDEX}")
    try:
        index = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{f}: corrupt index ({e})") from None
    for key in ("dtype", "vocab_size", "eos_id", "splits"):
        if key not in index:
            raise UserError(f"{f}: index lacks '{key}'")
    if index["dtype"] not in ("uint16", "uint32"):
        raise UserError(f"{f}: dtype {index['dtype']!r} is not uint16 or uint32")
    vocab_size, eos_id = index["vocab_size"], index["eos_id"]
    if not isinstance(vocab_size, int) or not 0 < vocab_size <= np.iinfo(index["dtype"]).max + 1:
        raise UserError(
            f"{f}: vocab_size {vocab_size!r} is not a positive integer that {index['dtype']} holds"
        )
    if not isinstance(eos_id, int) or not 0 <= eos_id < vocab_size:
        raise UserError(f"{f}: eos_id {eos_id!r} is not an id below vocab_size {vocab_size}")
    return index


def validate_tokens(
    path: str | Path, id_splits: Iterable[str] | None = None, *, scan: bool = False
) -> dict[str, Any]:
    """Check every shard against index.json (whole number of tokens, count as indexed) and that the ids of
    the splits `id_splits` (all when None) are below the vocabulary size: by the recorded `max_id`, or with
    `scan` (or none recorded) by reading every id. Returns the index."""
    path = Path(path)
    index = read_index(path)
    itemsize = np.dtype(index["dtype"]).itemsize
    for split, info in index["splits"].items():
        total = 0
        for shard in info.get("shards", []):
            f = path / shard["file"]
            if not f.is_file():
                raise UserError(f"{f}: shard listed in {INDEX} is missing")
            size = f.stat().st_size
            if size % itemsize:
                raise UserError(
                    f"{f}: {size} bytes is not a whole number of {index['dtype']} tokens (truncated?)"
                )
            if size // itemsize != shard["tokens"]:
                raise UserError(
                    f"{f}: holds {size // itemsize} tokens but {INDEX} says {shard['tokens']} (corrupt shard)"
                )
            total += shard["tokens"]
        if total != info.get("tokens", total):
            raise UserError(
                f"{path / INDEX}: split {split} shards add up to {total}, index says {info['tokens']}"
            )
    for split in index["splits"] if id_splits is None else id_splits:
        for shard in index["splits"].get(split, {}).get("shards", []):
            recorded = shard.get("max_id")
            if scan or not isinstance(recorded, int):
                check_ids(path / shard["file"], index["dtype"], index["vocab_size"], recorded)
            elif recorded >= index["vocab_size"]:
                raise UserError(
                    f"{path / shard['file']}: {INDEX} records max_id {recorded}, not below the vocab_size "
                    f"{index['vocab_size']} (encoded with another tokenizer, or {INDEX} edited)"
                )
    return index


def check_ids(f: Path, dtype: str, vocab_size: int, recorded: int | None = None) -> None:
    """UserError naming the first id ≥ vocab_size in shard `f` (an embedding lookup would fail on it), or
    saying that its largest id is not the `recorded` max_id."""
    stat = f.stat()
    key = (str(f.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _max_ids:
        _max_ids[key] = _max_id(f, dtype)
    if _max_ids[key] < vocab_size:
        if isinstance(recorded, int) and recorded != _max_ids[key]:
            raise UserError(
                f"{f}: its largest id is {_max_ids[key]}, {INDEX} records max_id {recorded} (corrupt shard)"
            )
        return
    ids = np.memmap(f, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
    bad = next(
        start + int(np.argmax(chunk >= vocab_size))
        for start in range(0, len(ids), SCAN_TOKENS)
        if (chunk := ids[start : start + SCAN_TOKENS]).max() >= vocab_size
    )
    raise UserError(
        f"{f}: token {bad:,} has id {int(ids[bad])}, not below the vocab_size {vocab_size} of {INDEX} "
        "(corrupt shard, or encoded with another tokenizer)"
    )


def _max_id(f: Path, dtype: str) -> int:
    if f.stat().st_size == 0:
        return -1
    ids = np.memmap(f, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
    return max(int(ids[start : start + SCAN_TOKENS].max()) for start in range(0, len(ids), SCAN_TOKENS))


class TokenShards:
    """One split of a tokens artifact, memory-mapped, addressed as a single stream of token ids."""

    def __init__(self, path: str | Path, split: str = "train"):
        self.path = Path(path)
        self.index = validate_tokens(self.path, id_splits=(split,))
        if split not in self.index["splits"]:
            raise UserError(f"{self.path}: no '{split}' split (have: {', '.join(self.index['splits'])})")
        self.split = split
        self.dtype = np.dtype(self.index["dtype"])
        self.vocab_size: int = self.index["vocab_size"]
        self.eos_id: int = self.index["eos_id"]
        shards = [s for s in self.index["splits"][split]["shards"] if s["tokens"] > 0]
        self._maps = [np.memmap(self.path / s["file"], dtype=self.dtype, mode="r") for s in shards]
        self._starts = np.cumsum([0] + [len(m) for m in self._maps])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) of the stream as int64 (crossing shard boundaries as needed)."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"read [{start}, {start + length}) outside a stream of {len(self)} tokens")
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        shard = int(np.searchsorted(self._starts, pos, side="right") - 1)
        while filled < length:
            m = self._maps[shard]
            offset = pos - int(self._starts[shard])
            take = min(length - filled, len(m) - offset)
            out[filled : filled + take] = m[offset : offset + take]
            filled += take
            pos += take
            shard += 1
        if length and out.max() >= self.vocab_size:  # one pass over what was read: cheap beside training
            bad = int(np.argmax(out >= self.vocab_size))
            raise UserError(
                f"{self.path}: {self.split} token {start + bad:,} has id {int(out[bad])}, not below the "
                f"vocab_size {self.vocab_size} of {INDEX} (corrupt shard; see llmforge inspect --verify)"
            )
        return out


@dataclass
class TokenWindows:
    """Windows of `seq_len + overlap` tokens starting every `seq_len` tokens of a split (overlap 1: inputs and
    shifted targets of next-token prediction; 0: the windows of masked LM and span corruption).

    Window order is a seeded permutation per epoch; position `cursor` in the global order is deterministic,
    so a run resumes exactly by saving the cursor. Rank `r` of `world` takes every world-th window of each
    global batch, so all ranks together see exactly what one process would.
    """

    shards: TokenShards
    seq_len: int
    seed: int = 0
    shuffle: bool = True
    overlap: int = 1

    def __post_init__(self) -> None:
        self.num_windows = (len(self.shards) - self.overlap) // self.seq_len
        if self.num_windows < 1:
            raise UserError(
                f"{self.shards.path}: split '{self.shards.split}' has {len(self.shards)} tokens, fewer than one "
                f"window of {self.seq_len + self.overlap}"
            )
        self._epoch = -1
        self._order: np.ndarray | None = None

    def _order_for(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            else:
                self._order = np.arange(self.num_windows)
            self._epoch = epoch
        assert self._order is not None
        return self._order

    def window(self, position: int) -> np.ndarray:
        """The window at global position `position` (positions run on across epochs)."""
        epoch, i = divmod(position, self.num_windows)
        w = int(self._order_for(epoch)[i])
        return self.shards.read(w * self.seq_len, self.seq_len + self.overlap)
