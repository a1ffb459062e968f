"""Wrappers that make `report.json`: `Metered` counts documents and bytes in and out of a step, per source,
and both it and `Timed` record the seconds spent in their step alone.

datatrove's own timers are not comparable across steps: filters time each document, but a dedup signature or
filter step times its whole loop, so it also counts the time spent in the steps before it (which produce its
input) or after it (which consume its output). `Stopwatch` measures a step from outside instead. The wrappers
share the inner step's `Stats`, so counters, drop reasons and seconds land in one entry of datatrove's stats
files (named after the wrapper's label)."""

from __future__ import annotations

import queue
import threading
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
        """The in-scope documents go through one `run` of the inner step (see `Scoped`), the others pass by,
        in input order."""
        yield from Scoped(self.step, self.only).run(data, rank, world_size)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        watch = Stopwatch()
        counted = self._count(watch.feed(data or ()), "in")
        inner = self.step.run if self.only is None else self._scoped
        yield from self._count(watch.drain(watch.call(inner, counted, rank, world_size)), "out")
        watch.record(self)


class Scoped:
    """Runs `step` once over the documents of the `only` sources while the others pass by, keeping the order.

    The inner step runs in a helper thread and pulls its input through a hand-over: after each in-scope
    document goes in, its outputs are passed on until the step asks for the next one, and only then do the
    out-of-scope documents that follow it pass by. So a step sees its documents as one stream (its state, its
    sandbox process and its timers live once per task, as without a scope), nothing is buffered, and a step
    that emits a document's output before asking for the next keeps the input order exactly. The threads never
    run at once (each waits on the other), so the output does not depend on scheduling."""

    _END = object()

    def __init__(self, step: PipelineStep, only: set[str]):
        self.step, self.only = step, only
        self._to_step: queue.Queue = queue.Queue(maxsize=1)
        self._from_step: queue.Queue = queue.Queue()
        self._running = False  # the step's thread is waiting for input

    def _feed(self) -> DocumentsPipeline:
        while True:
            self._from_step.put(("ready", None))
            doc = self._to_step.get()
            if doc is self._END:
                return
            yield doc

    def _work(self, rank: int, world_size: int) -> None:
        try:
            for out in self.step.run(self._feed(), rank, world_size) or ():
                self._from_step.put(("doc", out))
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            self._from_step.put(("error", e))
        else:
            self._from_step.put(("end", None))

    def _outputs(self) -> DocumentsPipeline:
        """The step's outputs until it asks for input again (or ends, or fails: re-raised here)."""
        while True:
            kind, value = self._from_step.get()
            if kind == "doc":
                yield value
                continue
            self._running = kind == "ready"
            if kind == "error":
                raise value
            return

    def run(self, data: DocumentsPipeline, rank: int, world_size: int) -> DocumentsPipeline:
        thread = threading.Thread(target=self._work, args=(rank, world_size), daemon=True)
        thread.start()
        try:
            yield from self._outputs()
            for doc in data:
                if doc.metadata.get("source") not in self.only:
                    yield doc
                elif self._running:  # a step that stopped reading gets no more documents
                    self._to_step.put(doc)
                    yield from self._outputs()
            if self._running:
                self._to_step.put(self._END)
                yield from self._outputs()
        finally:
            if self._running:  # closed early or failed downstream: let the step finish, drop its outputs
                self._to_step.put(self._END)
                for _ in self._outputs():
                    pass
            thread.join()


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
