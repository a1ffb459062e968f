"""`RemovedExamples`: keeps a few of the documents a filter removed, per drop reason, for the report.

datatrove filters (BaseFilter, the dedup filters) hand every removed document to their `exclusion_writer`,
with the reason in `metadata["filter_reason"]`. This stands in for that writer: it appends at most `per_reason`
short excerpts per reason and task to `<folder>/<rank>.jsonl`, so a huge build keeps a handful, not every
removed document. It opens the file per example, since a step scoped to some sources enters and leaves the
writer's context once per document.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document

SNIPPET_CHARS = 300


class RemovedExamples:
    def __init__(self, folder: str | Path, default_reason: str, per_reason: int = 3):
        self.folder = Path(folder)
        self.default_reason = default_reason
        self.per_reason = per_reason
        self._kept: Counter = Counter()

    def __enter__(self) -> RemovedExamples:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, document: Document, rank: int = 0, **_: Any) -> None:
        reason = document.metadata.get("filter_reason") or self.default_reason
        if self._kept[rank, reason] >= self.per_reason:
            return
        self._kept[rank, reason] += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "reason": reason,
            "id": document.id,
            "source": document.metadata.get("source", "unknown"),
            "text": document.text[:SNIPPET_CHARS],
        }
        with open(self.folder / f"{rank:05d}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_examples(folder: Path, per_reason: int = 3) -> dict[str, list[dict[str, str]]]:
    """reason → up to `per_reason` examples (id, source, text), across tasks in rank order."""
    out: dict[str, list[dict[str, str]]] = {}
    seen: set[str] = set()
    for f in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for line in f.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            examples = out.setdefault(record.pop("reason"), [])
            if record["id"] not in seen and len(examples) < per_reason:  # a resumed task may write twice
                seen.add(record["id"])
                examples.append(record)
    return out
