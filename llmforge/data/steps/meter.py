"""Wrappers that make `report.json`: `Metered` counts documents and bytes in and out of a step, per source,
and both it and `Timed` record the seconds spent in their step alone.

datatrove's own timers are not comparable across steps: filters time each document, but a dedup signature or
filter step times its whole loop, so it also counts the time spent in the steps before it (which produce its
input) or after it (which consume its output). `Stopwatch` measures a step from outside instead. The wrappers
share the inner step's `Stats`, so counters, drop reasons and seconds land in one entry of datatrove's stats
files (named after the wrapper's label)."""

from __future__ import annotations

import time
from collections.abc import Callable

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import TimingStats


class Stopwatch:
    """Seconds spent inside one step: time in its `run` call and in producing each document it yields, minus
    the time spent waiting for its input."""

    def __init__(self):
        self.seconds = 0.0

    def feed(self, data: DocumentsPipeline) -> DocumentsPipeline:
        it = iter(data)
        while True:
            start = time.perf_counter()
            doc = next(it, None)
            self.seconds -= time.perf_counter() - start
            if doc is None:
                return
            yield doc

    def call(self, run: Callable, *args) -> DocumentsPipeline | None:
        start = time.perf_counter()
        out = run(*args)
        self.seconds += time.perf_counter() - start
        return out

    def drain(self, out: DocumentsPipeline | None) -> DocumentsPipeline:
        if out is None:  # a step that only consumes (dedup signatures) did its work in `call`
            return
        while True:
            start = time.perf_counter()
            doc = next(out, None)
            self.seconds += time.perf_counter() - start
            if doc is None:
                return
            yield doc

    def record(self, step: PipelineStep) -> None:
        """Replace whatever the step's own timer recorded with the measured seconds."""
        step.stats.time_stats = TimingStats()
        step.stats.time_stats.update(self.seconds)


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
        watch = Stopwatch()
        counted = self._count(watch.feed(data or ()), "in")
        inner = self.step.run if self.only is None else self._scoped
        yield from self._count(watch.drain(watch.call(inner, counted, rank, world_size)), "out")
        watch.record(self)


class Timed(PipelineStep):
    """Records the seconds spent in `step` alone under `stats_name`. `report.py` adds them to the dedup step
    they belong to (input copy, signatures, buckets, clustering, read-back), so its docs/s covers all of it."""

    def __init__(self, step: PipelineStep, stats_name: str):
        super().__init__()
        self.step = step
        self.name = stats_name
        self.type = step.type
        self.stats = step.stats
        self.stats.name = stats_name

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        watch = Stopwatch()
        feed = watch.feed(data) if data is not None else None
        yield from watch.drain(watch.call(self.step.run, feed, rank, world_size))
        watch.record(self)
