"""`RemovedExamples`: keeps a few of the documents a filter removed, per drop reason, for the report.

datatrove filters (BaseFilter, the dedup filters) hand every removed document to their `exclusion_writer`,
with the reason in `metadata["filter_reason"]`. This stands in for that writer: it writes at most `per_reason`
short excerpts per reason and task to `<folder>/<rank>.jsonl`, so a huge build keeps a handful, not every
removed document. With `every_id` it also lists the id and reason of every removed document (`ids-<rank>.jsonl`)
and keeps the first `full_documents` removed documents whole (`documents-<rank>.jsonl`), for steps whose drops a
user must be able to audit one by one (html_to_text). A task's first write starts its files afresh, so a task
re-run on resume replaces what an unfinished run of it left instead of adding to it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document

SNIPPET_CHARS = 300
IDS_LISTED = "ids-listed"


class RemovedExamples:
    def __init__(
        self,
        folder: str | Path,
        default_reason: str,
        per_reason: int = 3,
        every_id: bool = False,
        full_documents: int = 0,
    ):
        self.folder = Path(folder)
        self.default_reason = default_reason
        self.per_reason = per_reason
        self.every_id, self.full_documents = every_id, full_documents
        self._kept: Counter = Counter()
        self._ranks_started: set[int] = set()
        if every_id:  # tells the report this step lists its removals, even when it removes nothing
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / IDS_LISTED).touch()

    def __enter__(self) -> RemovedExamples:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, document: Document, rank: int = 0, **_: Any) -> None:
        if rank not in self._ranks_started:  # this run of the task: drop what an earlier run of it wrote
            self._ranks_started.add(rank)
            for name in (f"{rank:05d}.jsonl", f"ids-{rank:05d}.jsonl", f"documents-{rank:05d}.jsonl"):
                (self.folder / name).unlink(missing_ok=True)
        reason = document.metadata.get("filter_reason") or self.default_reason
        source = document.metadata.get("source", "unknown")
        if self.every_id:
            self._append(f"ids-{rank:05d}.jsonl", {"id": document.id, "reason": reason, "source": source})
            if self._kept[rank, "full documents"] < self.full_documents:
                self._kept[rank, "full documents"] += 1
                record = {"id": document.id, "reason": reason, "source": source, "text": document.text}
                self._append(f"documents-{rank:05d}.jsonl", record)
        if self._kept[rank, reason] >= self.per_reason:
            return
        self._kept[rank, reason] += 1
        record = {
            "reason": reason,
            "id": document.id,
            "source": source,
            "text": document.text[:SNIPPET_CHARS],
        }
        self._append(f"{rank:05d}.jsonl", record)

    def _append(self, name: str, record: dict[str, str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_examples(folder: Path, per_reason: int = 3) -> dict[str, list[dict[str, str]]]:
    """reason → up to `per_reason` examples (id, source, text), across tasks in rank order."""
    out: dict[str, list[dict[str, str]]] = {}
    seen: set[str] = set()
    for f in sorted(folder.glob("[0-9]*.jsonl")) if folder.is_dir() else []:
        for line in f.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            examples = out.setdefault(record.pop("reason"), [])
            if record["id"] not in seen and len(examples) < per_reason:
                seen.add(record["id"])
                examples.append(record)
    return out


def _records(folder: Path, pattern: str) -> list[dict[str, str]]:
    """Records of the files matching `pattern`, in rank order."""
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def read_removed_ids(folder: Path) -> list[dict[str, str]] | None:
    """Every removed document's id, reason and source (None when the step does not list them)."""
    return _records(folder, "ids-*.jsonl") if (folder / IDS_LISTED).is_file() else None


def read_removed_documents(folder: Path, cap: int) -> list[dict[str, str]]:
    """The first `cap` removed documents kept whole."""
    return _records(folder, "documents-*.jsonl")[:cap]
