"""The OpenAI-compatible routes: POST /v1/chat/completions and /v1/completions (JSON, or server-sent events with
`"stream": true`), GET /v1/models, /v1/models/{id} and /health.

A chat request is rendered with the checkpoint's own chat template (a checkpoint without one gets 400 and is
served on /v1/completions only); a conversation longer than the context is refused with
`context_length_exceeded`, not silently cut. The steering of `serve --steer` applies to every reply.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmforge.console import UserError
from llmforge.serve.errors import ApiError, log, sse
from llmforge.serve.models import Cancel, ModelPool, ServedModel
from llmforge.serve.openai_schema import (
    ChatRequest,
    CompletionRequest,
    Sampling,
    clamped_header,
    settings_for,
)

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
_DONE = object()


class Job:
    """The prompts of one request (one per choice), encoded and checked, with the settings each uses."""

    def __init__(self, served: ServedModel, prompts: list[tuple[str, list[int]]], settings: list[Any], n: int,
                 clamped: dict[str, Any]):  # fmt: skip
        self.served, self.prompts, self.settings, self.n, self.clamped = served, prompts, settings, n, clamped

    @property
    def exclusive(self) -> bool:
        return any(s.seed is not None and not s.greedy for s in self.settings)


def _encode(pool: ModelPool, req: Sampling, chat: bool) -> Job:
    from dataclasses import replace

    from llmforge.generation.sampling import encode_plain, render_chat
    from llmforge.generation.steering import steer_messages, steer_prompt

    served = pool.get(req.model)
    loaded = served.loaded
    try:
        if chat:
            if not loaded.has_chat_template:
                raise ApiError(400, f"model {served.id!r} has no chat template (not fine-tuned for chat); send its "
                               "prompts to /v1/completions", code="no_chat_template", param="model")  # fmt: skip
            messages = [{"role": m.role, "content": m.text()} for m in req.messages]
            ids = render_chat(loaded, list(steer_messages(pool.steering, messages)))
            rendered = [(messages[-1]["content"], ids)]
        else:
            texts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
            if not texts or len(texts) > pool.limits.max_prompts:
                raise ApiError(400, f"prompt: give 1..{pool.limits.max_prompts} prompts", param="prompt")
            rendered = [(t, encode_plain(loaded, steer_prompt(pool.steering, t))) for t in texts]
    except UserError as e:
        raise ApiError(400, str(e), param="messages" if chat else "prompt") from None
    longest = max(len(ids) for _, ids in rendered)
    room = None if loaded.context is None else loaded.context - longest
    settings, clamped = settings_for(req, pool.limits, room)
    if room is not None and longest + settings.max_new_tokens > loaded.context:
        raise ApiError(
            400,
            f"{longest} prompt tokens + max_tokens {settings.max_new_tokens} exceed the model's context of "
            f"{loaded.context} tokens",
            code="context_length_exceeded",
            param="messages" if chat else "prompt",
        )
    prompts, per_choice = [], []
    for text, ids in rendered:
        for i in range(req.n):
            seed = None if settings.seed is None else settings.seed + i  # n samples of one prompt differ
            prompts.append((text, ids))
            per_choice.append(replace(settings, seed=seed))
    return Job(served, prompts, per_choice, req.n, clamped)


def _worker(pool: ModelPool, job: Job, on_text: Callable[[int, str], None] | None, cancel: Cancel):
    from llmforge.generation.sampling import generate_ids

    def work() -> list[Any]:
        out = []
        for i, ((text, ids), settings) in enumerate(zip(job.prompts, job.settings, strict=True)):
            if cancel():
                break
            stream = (lambda d, i=i: on_text(i, d)) if on_text else None
            gen = generate_ids(job.served.loaded, text, ids, settings, stream, steering=pool.steering,
                               cancelled=cancel)  # fmt: skip
            pool.stats.new_tokens += gen.new_tokens
            out.append(gen)
        return out

    return work


async def _run(pool: ModelPool, job: Job, request: Request) -> list[Any]:
    """Generate without streaming; a client that disconnects while it waits has its generation stopped."""
    cancel = Cancel()
    future = await pool.start(_worker(pool, job, None, cancel), exclusive=job.exclusive)
    while not future.done():
        await asyncio.wait({future}, timeout=0.5)
        if not future.done() and await request.is_disconnected():
            cancel.set()
            pool.stats.cancelled += 1
            break
    gens = await future
    pool.stats.served += 1
    return gens


async def _stream(pool: ModelPool, job: Job) -> AsyncIterator[tuple[int, str] | list[Any] | ApiError]:
    """(choice index, text delta) as they are produced, then the list of Generations. Closing the iterator
    early (the client went away) stops the generation at its next token."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = Cancel()

    def on_text(i: int, delta: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (i, delta))

    future = await pool.start(_worker(pool, job, on_text, cancel), exclusive=job.exclusive)
    future.add_done_callback(lambda _: queue.put_nowait(_DONE))
    finished = False
    try:
        while (item := await queue.get()) is not _DONE:
            yield item
        finished = True
        pool.stats.served += 1
        try:
            yield future.result()
        except Exception as e:  # noqa: BLE001 - a failed generation ends the stream with an error event
            log.exception("generation failed")
            yield ApiError(500, f"generation failed: {type(e).__name__}: {e}", kind="server_error")
    finally:
        if not finished:
            cancel.set()
            pool.stats.cancelled += 1


def _ids(prefix: str) -> tuple[str, int]:
    return f"{prefix}-{uuid.uuid4().hex[:24]}", int(time.time())


def router(pool: ModelPool) -> APIRouter:
    api = APIRouter()

    @api.get("/health")
    async def health() -> dict:
        return pool.health()

    @api.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [m.card() for m in pool.models.values()]}

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict:
        return pool.get(model_id).card()

    @api.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        job = _encode(pool, req, chat=True)
        rid, created = _ids("chatcmpl")
        head = {"id": rid, "created": created, "model": job.served.id}
        headers = clamped_header(job.clamped)
        if req.stream:
            return StreamingResponse(
                _chat_events(pool, job, head, _include_usage(req)),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )
        gens = await _run(pool, job, request)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": FINISH[g.finish_reason]}
            for i, g in enumerate(gens)
        ]  # fmt: skip
        body = {**head, "object": "chat.completion", "choices": choices, "usage": _usage(gens, job.n)}
        return JSONResponse(body, headers=headers)

    @api.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        job = _encode(pool, req, chat=False)
        rid, created = _ids("cmpl")
        head = {"id": rid, "created": created, "model": job.served.id}
        headers = clamped_header(job.clamped)
        if req.stream:
            return StreamingResponse(
                _completion_events(pool, job, head, _include_usage(req)),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )
        gens = await _run(pool, job, request)
        choices = [
            {"index": i, "text": g.text, "logprobs": None, "finish_reason": FINISH[g.finish_reason]}
            for i, g in enumerate(gens)
        ]
        body = {**head, "object": "text_completion", "choices": choices, "usage": _usage(gens, job.n)}
        return JSONResponse(body, headers=headers)

    return api


def _include_usage(req: Sampling) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def _usage(gens: list[Any], n: int) -> dict[str, int]:
    """Each prompt counts once however many choices (n) it has, as OpenAI counts it."""
    prompt = sum(g.prompt_tokens for g in gens[::n])
    completion = sum(g.new_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _chat_events(pool: ModelPool, job: Job, head: dict, usage: bool) -> AsyncIterator[str]:
    def chunk(choices: list[dict]) -> str:
        return sse({**head, "object": "chat.completion.chunk", "choices": choices})

    started: set[int] = set()
    async for item in _stream(pool, job):
        if isinstance(item, ApiError):
            yield sse(item.body()) + "data: [DONE]\n\n"
            return
        if isinstance(item, list):
            for i in range(len(job.prompts)):
                if i not in started:  # a choice that produced no text still opens with its role
                    yield chunk(
                        [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
                    )
            for i, g in enumerate(item):
                yield chunk([{"index": i, "delta": {}, "finish_reason": FINISH[g.finish_reason]}])
            if usage:
                yield sse(
                    {**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(item, job.n)}
                )
            yield "data: [DONE]\n\n"
            return
        i, delta = item
        if i not in started:
            started.add(i)
            yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        yield chunk([{"index": i, "delta": {"content": delta}, "finish_reason": None}])


async def _completion_events(pool: ModelPool, job: Job, head: dict, usage: bool) -> AsyncIterator[str]:
    def chunk(choices: list[dict]) -> str:
        return sse({**head, "object": "text_completion", "choices": choices})

    async for item in _stream(pool, job):
        if isinstance(item, ApiError):
            yield sse(item.body()) + "data: [DONE]\n\n"
            return
        if isinstance(item, list):
            for i, g in enumerate(item):
                yield chunk(
                    [{"index": i, "text": "", "logprobs": None, "finish_reason": FINISH[g.finish_reason]}]
                )
            if usage:
                yield sse({**head, "object": "text_completion", "choices": [], "usage": _usage(item, job.n)})
            yield "data: [DONE]\n\n"
            return
        i, delta = item
        yield chunk([{"index": i, "text": delta, "logprobs": None, "finish_reason": None}])
