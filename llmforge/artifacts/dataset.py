"""The `dataset` contract: `data/*.jsonl.gz` (or `data/*.parquet`) shards written by datatrove writers.

Each record has `text` and `id`; its source name is `source` at the top level or `metadata.source`
(datatrove keeps per-document metadata there). `report.json` beside the shards holds per-step statistics,
`timings.json` how long each step took (outside the content hash).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmforge.console import UserError

DATA_DIR = "data"
REPORT = "report.json"


def dataset_files(path: str | Path) -> list[Path]:
    """The data shards of a dataset artifact, sorted; UserError when there are none."""
    root = Path(path) / DATA_DIR
    files = sorted([*root.glob("*.jsonl.gz"), *root.glob("*.jsonl"), *root.glob("*.parquet")])
    if not files:
        raise UserError(f"{path}: dataset has no shards under {DATA_DIR}/ (empty dataset?)")
    return files


def _normalise(record: dict[str, Any], where: str) -> dict[str, Any]:
    text = record.get("text")
    if not isinstance(text, str):
        raise UserError(f"{where}: record without a string 'text' field")
    meta = record.get("metadata") or {}
    return {
        "text": text,
        "id": str(record.get("id", "")),
        "source": record.get("source") or meta.get("source") or "unknown",
        "metadata": meta,
    }


def iter_documents(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield {text, id, source, metadata} for every document of a dataset artifact, in shard order."""
    for f in dataset_files(path):
        yield from iter_shard(f)


def iter_shard(f: Path) -> Iterator[dict[str, Any]]:
    if f.suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(f).iter_batches():
            for i, record in enumerate(batch.to_pylist()):
                yield _normalise(record, f"{f} row {i}")
        return
    opener = gzip.open if f.name.endswith(".gz") else open
    try:
        with opener(f, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(f"{f}:{lineno}: corrupt JSON line ({e.msg})") from None
                    yield _normalise(record, f"{f}:{lineno}")
    except (OSError, EOFError) as e:
        raise UserError(f"{f}: corrupt or truncated shard ({e})") from None
