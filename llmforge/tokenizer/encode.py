"""Encode a `dataset` artifact into a `tokens` artifact (contract: `llmforge.artifacts.tokens`).

Each dataset shard is one work unit, encoded into `train/NNNNN.bin` and `val/NNNNN.bin` (EOS after every
document, val chosen by a hash of the origin document's id: `llmforge.artifacts.split`). Finished units are
kept in a staging directory beside the output, so a re-run after a crash redoes only the unfinished ones and
produces the same bytes; the artifact appears atomically once every unit is done.

Parallelism: in one process, `tokenizers` already encodes each batch on every core (its Rust thread pool);
worker processes add only the Python-side share (reading, JSON, packing, ~5-10% of the time) and cost a
start-up each (interpreter, imports, tokenizer load, ~0.3 s). So `workers` processes are started only when
each gets at least `MIN_BYTES_PER_PROCESS` of text, and never more than there are cores or units; on a few MB
the work stays in this process and more workers are never slower.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from llmforge.artifacts import atomic_dir, require, write_json, write_manifest
from llmforge.artifacts.dataset import dataset_files, iter_shard
from llmforge.artifacts.split import is_val, split_record
from llmforge.artifacts.tokens import FORMAT_VERSION, INDEX, SPLITS, dtype_for_vocab
from llmforge.console import UserError, progress, rate_text, warn
from llmforge.tokenizer.config import sentinel_token

BATCH_DOCS = 512
DONE_DIR = "done"
# A process costs ~0.3 s to start and wins back the ~8% Python-side share of its text's time: at the 2-core
# dev machine's ~4 MB/s that breaks even near 15 MB; 32 MB leaves a margin for slower starts.
MIN_BYTES_PER_PROCESS = 32_000_000


def load_tokenizer_file(tokenizer: Path) -> Any:
    """The `tokenizers.Tokenizer` of a tokenizer directory; UserError when tokenizer.json does not parse."""
    from tokenizers import Tokenizer

    f = tokenizer / "tokenizer.json"
    if not f.is_file():
        raise UserError(f"{f}: missing (a tokenizer directory needs tokenizer.json)")
    try:
        return Tokenizer.from_file(str(f))
    except Exception as e:  # tokenizers raises a bare Exception for malformed files
        raise UserError(f"{f}: does not parse as a tokenizers file ({str(e).splitlines()[0]})") from None


def special_ids(tokenizer: Path, tok: Any) -> dict[str, int | None]:
    """bos/eos/pad/mask ids named in tokenizer_config.json (falling back to special_tokens_map.json)."""
    names: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = tokenizer / name
        if f.is_file():
            names.update(json.loads(f.read_text()))
    ids = {}
    for key in ("bos", "eos", "pad", "mask"):
        token = names.get(f"{key}_token")
        if isinstance(token, dict):
            token = token.get("content")
        ids[f"{key}_id"] = tok.token_to_id(token) if isinstance(token, str) else None
    if ids["eos_id"] is None:
        raise UserError(f"{tokenizer}: tokenizer has no eos_token (needed between documents)")
    return ids


def sentinel_ids(tok: Any) -> list[int]:
    """Ids of the special tokens `<extra_id_0>`, `<extra_id_1>`, … in that order, up to the first k that
    the tokenizer lacks (T5's span-corruption sentinels; [] for a tokenizer without them)."""
    special = {added.content: i for i, added in tok.get_added_tokens_decoder().items() if added.special}
    ids: list[int] = []
    while sentinel_token(len(ids)) in special:
        ids.append(special[sentinel_token(len(ids))])
    return ids


def encode_unit(
    tokenizer_file: str,
    shard: str,
    staging: str,
    unit: int,
    eos_id: int,
    vocab_size: int,
    val_fraction: float,
    queue: Any = None,
) -> dict[str, Any]:
    """Encode one dataset shard into staging/{train,val}/UNIT.bin; write and return its stats."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_file)
    dtype = dtype_for_vocab(vocab_size).newbyteorder("<")
    staging_dir = Path(staging)
    name = f"{unit:05d}.bin"
    stats: dict[str, Any] = {s: {"tokens": 0, "documents": 0, "max_id": -1} for s in SPLITS}
    stats["sources"] = {}
    stats["skipped_empty"] = 0
    stats["bytes"] = 0
    handles = {}
    for split in SPLITS:
        (staging_dir / split).mkdir(parents=True, exist_ok=True)
        handles[split] = open(staging_dir / split / f".{name}.tmp", "wb")

    def flush(batch: list[dict]) -> None:
        encodings = tok.encode_batch_fast([d["text"] for d in batch], add_special_tokens=False)
        nbytes = 0
        for doc, enc in zip(batch, encodings, strict=True):
            ids = np.asarray(enc.ids + [eos_id], dtype=np.int64)
            top = int(ids.max())
            if top >= vocab_size:
                raise UserError(f"{shard}: token id {top} does not fit vocab_size {vocab_size}")
            split = "val" if is_val(doc, val_fraction) else "train"
            stats[split]["max_id"] = max(stats[split]["max_id"], top)
            ids.astype(dtype).tofile(handles[split])
            stats[split]["tokens"] += len(ids)
            stats[split]["documents"] += 1
            src = stats["sources"].setdefault(
                doc["source"], {"train_tokens": 0, "val_tokens": 0, "documents": 0}
            )
            src[f"{split}_tokens"] += len(ids)
            src["documents"] += 1
            nbytes += len(doc["text"].encode("utf-8", "surrogatepass"))
        stats["bytes"] += nbytes
        if queue is not None:
            queue.put(nbytes)

    try:
        batch: list[dict] = []
        for doc in iter_shard(Path(shard)):
            if not doc["text"]:
                stats["skipped_empty"] += 1
                continue
            batch.append(doc)
            if len(batch) == BATCH_DOCS:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    finally:
        for h in handles.values():
            h.close()
    for split in SPLITS:
        os.replace(staging_dir / split / f".{name}.tmp", staging_dir / split / name)
    (staging_dir / DONE_DIR).mkdir(exist_ok=True)
    write_json(staging_dir / DONE_DIR / f"{unit:05d}.json", stats)
    return stats


def encode_dataset(
    dataset: Path,
    tokenizer: Path,
    out: Path,
    *,
    val_fraction: float,
    workers: int = 1,
    recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the tokens artifact at `out`; returns its report (index totals, per-source counts, speed)."""
    data_manifest = require(dataset, "dataset")
    tok_manifest = require(tokenizer, "tokenizer")
    tok = load_tokenizer_file(tokenizer)
    ids: dict[str, Any] = {**special_ids(tokenizer, tok), "sentinel_ids": sentinel_ids(tok)}
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    shards = dataset_files(dataset)
    staging = _staging(
        out,
        {
            "dataset_hash": data_manifest.get("content_hash"),
            "tokenizer_hash": tok_manifest.get("content_hash"),
            "split": split_record(val_fraction),
            "shards": [f.name for f in shards],
        },
    )
    done = {int(p.stem) for p in (staging / DONE_DIR).glob("*.json")}
    todo = [i for i in range(len(shards)) if i not in done]
    done_bytes = sum(json.loads((staging / DONE_DIR / f"{i:05d}.json").read_text())["bytes"] for i in done)
    dataset_bytes = data_manifest.get("stats", {}).get("bytes_out")
    processes = plan_processes(workers, _todo_bytes(shards, todo, dataset_bytes, done_bytes), len(todo))
    args = [
        (
            str(tokenizer / "tokenizer.json"),
            str(shards[i]),
            str(staging),
            i,
            ids["eos_id"],
            vocab_size,
            val_fraction,
        )
        for i in todo
    ]
    start = time.perf_counter()
    _run_units(args, processes, total_bytes=dataset_bytes, resumed_bytes=done_bytes)
    seconds = time.perf_counter() - start
    units = [json.loads((staging / DONE_DIR / f"{i:05d}.json").read_text()) for i in range(len(shards))]
    index = _index(units, vocab_size, ids, tokenizer, tok_manifest, val_fraction)
    if index["splits"]["train"]["tokens"] == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{dataset}: no non-empty documents to encode (empty dataset?)")
    if val_fraction > 0 and index["splits"]["val"]["documents"] == 0:
        warn(f"{dataset}: no document fell into the val split (val_fraction {val_fraction}); raise it")
    total_bytes = sum(u["bytes"] for u in units)
    total_tokens = sum(index["splits"][s]["tokens"] for s in SPLITS)
    encoded_bytes = sum(u["bytes"] for i, u in enumerate(units) if i in todo)
    report = {
        "tokens": {s: index["splits"][s]["tokens"] for s in SPLITS},
        "documents": {s: index["splits"][s]["documents"] for s in SPLITS},
        "sources": index["sources"],
        "dtype": index["dtype"],
        "vocab_size": vocab_size,
        "bytes": total_bytes,
        "bytes_per_token": round(total_bytes / max(1, total_tokens), 4),
        "skipped_empty_documents": sum(u["skipped_empty"] for u in units),
        "resumed_units": len(done),
        "workers": workers,
        "processes": processes,
        "seconds": round(seconds, 3),
        "encode_mb_per_s": round(encoded_bytes / 1e6 / seconds, 3) if todo and seconds > 0 else None,
    }
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            (tmp / split).mkdir()
            for i in range(len(shards)):
                os.link(staging / split / f"{i:05d}.bin", tmp / split / f"{i:05d}.bin")
        write_json(tmp / INDEX, index)
        write_manifest(tmp, "tokens", recipe=recipe, inputs=[dataset, tokenizer], stats=report)
    shutil.rmtree(staging, ignore_errors=True)
    return report


def _staging(out: Path, params: dict[str, Any]) -> Path:
    """The staging directory for `out`, emptied when it holds units of other inputs or settings."""
    staging = out.with_name(f".{out.name}.partial")
    params_file = staging / "params.json"
    if staging.exists() and (not params_file.is_file() or json.loads(params_file.read_text()) != params):
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    write_json(params_file, params)
    return staging


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_processes(workers: int, todo_bytes: int, units: int) -> int:
    """How many worker processes to start (1: encode in this process, on tokenizers' threads)."""
    worthwhile = todo_bytes // MIN_BYTES_PER_PROCESS
    return max(1, min(workers, units, usable_cores(), worthwhile))


def _todo_bytes(shards: list[Path], todo: list[int], dataset_bytes: int | None, done_bytes: int) -> int:
    """Text bytes left to encode: the dataset's byte count less the resumed units' (else the files' size)."""
    if dataset_bytes is not None:
        return max(0, dataset_bytes - done_bytes)
    return sum(shards[i].stat().st_size for i in todo)


def _run_units(args: list[tuple], processes: int, total_bytes: int | None, resumed_bytes: int = 0) -> None:
    """Encode every unit of `args`; the bar starts at the resumed units' bytes and ends full."""
    with progress() as bar:
        task = bar.add_task("encoding", total=total_bytes, completed=resumed_bytes, rate="")
        start = time.perf_counter()
        encoded = 0

        def advance(n: int) -> None:
            nonlocal encoded
            encoded += n
            bar.update(task, advance=n, rate=rate_text(encoded, time.perf_counter() - start, "B"))

        _encode_units(args, processes, advance)
        # the dataset's byte count is what its writer measured; the bar ends at what was really encoded
        bar.update(task, total=resumed_bytes + encoded, completed=resumed_bytes + encoded)


def _encode_units(args: list[tuple], processes: int, advance) -> None:
    if processes == 1:
        queue = _InlineQueue(advance)
        for a in args:
            encode_unit(*a, queue=queue)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after tokenizers' thread pool started can deadlock
    threads = max(1, usable_cores() // processes)
    with (
        ctx.Manager() as manager,
        ProcessPoolExecutor(processes, mp_context=ctx, initializer=_share_cores, initargs=(threads,)) as pool,
    ):
        queue = manager.Queue()
        futures = [pool.submit(encode_unit, *a, queue=queue) for a in args]
        pending = set(futures)
        while pending:
            while not queue.empty():
                advance(queue.get())
            finished = {f for f in pending if f.done()}
            for f in finished:
                f.result()
            pending -= finished
            time.sleep(0.05)
        while not queue.empty():
            advance(queue.get())


def _share_cores(threads: int) -> None:
    """Give each worker process its share of the cores for tokenizers' thread pool (set before it starts)."""
    if threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    else:
        os.environ["RAYON_NUM_THREADS"] = str(threads)


class _InlineQueue:
    """The queue interface `encode_unit` reports progress to, for in-process runs."""

    def __init__(self, callback):
        self.put = callback


def _index(
    units: list[dict], vocab_size: int, ids: dict, tokenizer: Path, tok_manifest: dict, val_fraction: float
) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in SPLITS:
        shards = [
            {
                "file": f"{split}/{i:05d}.bin",
                "tokens": u[split]["tokens"],
                "documents": u[split]["documents"],
                # the shard's largest id (-1: empty), so readers check ids against vocab_size without a scan;
                # a unit resumed from an older staging dir has none, and readers then scan that shard
                **({"max_id": u[split]["max_id"]} if "max_id" in u[split] else {}),
            }
            for i, u in enumerate(units)
        ]
        splits[split] = {
            "tokens": sum(s["tokens"] for s in shards),
            "documents": sum(s["documents"] for s in shards),
            "shards": shards,
        }
    sources: dict[str, dict[str, int]] = {}
    for u in units:
        for name, c in u["sources"].items():
            agg = sources.setdefault(name, {"train_tokens": 0, "val_tokens": 0, "documents": 0})
            for k in agg:
                agg[k] += c[k]
    return {
        "format": FORMAT_VERSION,
        "dtype": dtype_for_vocab(vocab_size).name,
        "vocab_size": vocab_size,
        **ids,
        "tokenizer_path": str(tokenizer.resolve()),
        "tokenizer_hash": tok_manifest.get("content_hash"),
        "split": split_record(val_fraction),
        "splits": splits,
        "sources": dict(sorted(sources.items())),
    }
