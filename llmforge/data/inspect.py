"""Look at a built dataset: statistics by source and by length, the build report, and random samples."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from llmforge.artifacts import require
from llmforge.artifacts.dataset import REPORT, iter_documents


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def dataset_stats(path: Path) -> dict[str, Any]:
    """Docs, bytes and length percentiles (characters) per source, plus what each build step removed."""
    require(path, "dataset")
    lengths: dict[str, list[int]] = defaultdict(list)
    nbytes: dict[str, int] = defaultdict(int)
    for doc in iter_documents(path):
        lengths[doc["source"]].append(len(doc["text"]))
        nbytes[doc["source"]] += len(doc["text"].encode("utf-8"))
    by_source = {}
    for source, values in sorted(lengths.items()):
        values.sort()
        by_source[source] = {
            "docs": len(values),
            "bytes": nbytes[source],
            "chars_p10": _percentile(values, 0.1),
            "chars_p50": _percentile(values, 0.5),
            "chars_p90": _percentile(values, 0.9),
            "chars_max": values[-1],
        }
    report_file = path / REPORT
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    removed = {
        s["step"]: {
            "docs_in": s["docs_in"],
            "docs_out": s["docs_out"],
            "dropped": s["dropped"],
            "examples": s.get("examples", {}),
            **{k: s[k] for k in ("dropped_ids", "matches_per_eval_item") if k in s},
        }
        for s in report.get("steps", [])
    }
    return {
        "path": str(path),
        "docs": sum(v["docs"] for v in by_source.values()),
        "bytes": sum(nbytes.values()),
        "by_source": by_source,
        "steps": removed,
    }


def sample_documents(path: Path, n: int, seed: int, source: str | None = None) -> list[dict[str, Any]]:
    """`n` documents drawn uniformly (reservoir sampling, seeded), optionally from one source."""
    require(path, "dataset")
    rng = random.Random(seed)
    picked: list[dict[str, Any]] = []
    seen = 0
    for doc in iter_documents(path):
        if source is not None and doc["source"] != source:
            continue
        seen += 1
        if len(picked) < n:
            picked.append(doc)
        elif (j := rng.randrange(seen)) < n:
            picked[j] = doc
    return picked
