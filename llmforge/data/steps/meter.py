"""`Metered`: wraps any datatrove step and counts documents and bytes in and out, per source.

This is how `report.json` gets, for every step, docs/bytes in and out next to the step's own drop reasons:
the wrapper shares the inner step's `Stats`, so both land in one entry of datatrove's stats files."""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep


class Metered(PipelineStep):
    """`only`: source names the inner step applies to; documents of other sources pass by untouched."""

    def __init__(self, step: PipelineStep, label: str, only: list[str] | None = None):
        super().__init__()
        self.step = step
        self.only = set(only) if only is not None else None
        self.name = label
        self.type = step.type
        self.stats = step.stats
        self.stats.name = label

    def _count(self, data: DocumentsPipeline, side: str) -> DocumentsPipeline:
        for doc in data:
            n = len(doc.text.encode("utf-8"))
            source = doc.metadata.get("source", "unknown")
            self.stat_update(f"docs_{side}", f"docs_{side}/{source}")
            self.stat_update(f"bytes_{side}", value=n)
            self.stat_update(f"bytes_{side}/{source}", value=n)
            yield doc

    def _scoped(self, data: DocumentsPipeline, rank: int, world_size: int) -> DocumentsPipeline:
        # one document at a time through the inner step: only per-document steps are scoped (not dedup)
        for doc in data:
            if doc.metadata.get("source") in self.only:
                yield from self.step.run(iter([doc]), rank, world_size)
            else:
                yield doc

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counted = self._count(data or (), "in")
        if self.only is None:
            out = self.step.run(counted, rank, world_size)
        else:
            out = self._scoped(counted, rank, world_size)
        yield from self._count(out, "out")
