"""The served checkpoints and the pool of generation slots they share.

Generation runs in worker threads (`model.generate` blocks), at most `limits.parallel` at once; the event loop
stays free, so /health, the pages and streaming to other clients go on while a reply is produced. A request
that finds `limits.max_waiting` others already waiting is refused with 503 rather than queued without end.

A seeded sampled request runs alone: torch's global generator is what `model.generate` draws from, and a
draw by a request beside it would change its text. So seeded requests are exclusive slots (a writer in a
readers–writer lock), and `seed = S` gives the text `llmforge generate --seed S` gives.

A client that disconnects has its generation stopped at the next token (`cancelled` in `generate_ids`); its
slot is freed when the worker thread returns, never before, so threads never outnumber slots.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.serve.errors import ApiError
from llmforge.serve.limits import ServerLimits

GONE_POLL_S = 0.25  # how often a waiting request checks that its client is still there


@dataclass
class ServedModel:
    id: str
    loaded: Any  # llmforge.generation.loading.Loaded
    created: int = field(default_factory=lambda: int(time.time()))

    def card(self) -> dict[str, Any]:
        """This model's entry in GET /v1/models (OpenAI's fields, then llmforge's own)."""
        loaded = self.loaded
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "llmforge",
            "llmforge": {  # no filesystem paths: they are the operator's, printed when the server starts
                "adapter": loaded.base is not None,
                "chat_template": loaded.has_chat_template,
                "context": loaded.context,
                "device": str(loaded.device),
            },
        }


def model_ids(specs: list[str]) -> list[tuple[str, Path]]:
    """(id, path) of each `PATH` or `NAME=PATH`; a bare path's id is the path as typed, so two checkpoints
    both named `checkpoint` stay apart (runs/a/finetune/checkpoint, runs/a/rlhf/dpo/checkpoint)."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name:
            name, path = spec.rstrip("/") or spec, spec
        out.append((name, Path(path)))
    seen: set[str] = set()
    for name, _ in out:
        if name in seen:
            from llmforge.console import UserError

            raise UserError(f"{name}: given twice; serve each checkpoint once (NAME=PATH names it)")
        seen.add(name)
    return out


class Slots:
    """At most `n` shared holders, or one exclusive holder (readers–writer), awaited on the event loop. A
    waiting exclusive request goes before shared ones that come after it, so steady traffic cannot starve it."""

    def __init__(self, n: int):
        self.n, self.active, self.exclusive, self.exclusive_waiting = n, 0, False, 0
        self._cond = asyncio.Condition()

    def free(self, exclusive: bool) -> bool:
        if self.exclusive:
            return False
        if exclusive:
            return self.active == 0
        return self.active < self.n and self.exclusive_waiting == 0

    async def acquire(self, exclusive: bool) -> None:
        async with self._cond:
            self.exclusive_waiting += exclusive
            try:
                await self._cond.wait_for(lambda: self.free(exclusive))
            finally:
                self.exclusive_waiting -= exclusive
            self.active += 1
            self.exclusive = exclusive

    async def release(self) -> None:
        async with self._cond:
            self.active -= 1
            self.exclusive = False
            self._cond.notify_all()


@dataclass
class Stats:
    served: int = 0
    cancelled: int = 0
    refused_busy: int = 0
    new_tokens: int = 0


class ModelPool:
    def __init__(self, models: list[ServedModel], limits: ServerLimits, steering: Any = None):
        self.models = {m.id: m for m in models}
        self.limits = limits
        self.steering = steering
        self.stats = Stats()
        self.waiting = 0
        self._slots: Slots | None = None
        self._executor = ThreadPoolExecutor(max_workers=limits.parallel, thread_name_prefix="generate")

    def get(self, model_id: str) -> ServedModel:
        try:
            return self.models[model_id]
        except KeyError:
            raise ApiError(
                404,
                f"model {model_id!r} is not served here; GET /v1/models lists: {', '.join(self.models)}",
                code="model_not_found",
                param="model",
            ) from None

    @property
    def active(self) -> int:
        return self._slots.active if self._slots else 0

    async def start(
        self, work: Callable[[], Any], *, exclusive: bool, gone: Callable[[], Awaitable[bool]] | None = None
    ) -> asyncio.Future:
        """Wait for a slot and run `work` in a worker thread; the slot is freed when `work` returns. `gone`
        (the client has disconnected) is polled while the request waits: a client that left gives up its
        place in the queue at once (ClientGone) instead of taking a slot for nobody."""
        if self._slots is None:
            self._slots = Slots(self.limits.parallel)
        if self.waiting >= self.limits.max_waiting and not self._slots.free(exclusive):
            self.stats.refused_busy += 1
            raise ApiError(
                503,
                f"the server is busy ({self.waiting} requests wait for a generation slot); retry later",
                code="server_busy",
                kind="server_error",
            )
        self.waiting += 1
        try:
            await self._wait_for_slot(exclusive, gone)
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        slots = self._slots
        future = loop.run_in_executor(self._executor, work)
        future.add_done_callback(lambda _: loop.create_task(slots.release()))
        return future

    async def _wait_for_slot(self, exclusive: bool, gone: Callable[[], Awaitable[bool]] | None) -> None:
        assert self._slots is not None
        acquire = asyncio.ensure_future(self._slots.acquire(exclusive))
        try:
            while True:
                await asyncio.wait({acquire}, timeout=GONE_POLL_S)
                if acquire.done():
                    acquire.result()
                    return
                if gone is not None and await gone():
                    self.stats.cancelled += 1
                    raise ClientGone
        except BaseException:
            await self._abandon(acquire)
            raise

    async def _abandon(self, acquire: asyncio.Future) -> None:
        """Stop waiting; a slot granted in the meantime is handed back."""
        acquire.cancel()
        try:
            await acquire
        except asyncio.CancelledError:
            return
        await self._slots.release()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "models": list(self.models),
            "active": self.active,
            "waiting": self.waiting,
            "parallel": self.limits.parallel,
            "served": self.stats.served,
            "cancelled": self.stats.cancelled,
            "refused_busy": self.stats.refused_busy,
            "new_tokens": self.stats.new_tokens,
        }

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ClientGone(Exception):
    """The client disconnected while its request waited for a slot."""


class Cancel:
    """Set when the client has gone; read by the generating thread after every token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()
