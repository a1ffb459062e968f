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
from llmforge.serve.errors import ApiError, internal_error, log, sse
from llmforge.serve.models import Cancel, ClientGone, ModelPool, ServedModel
from llmforge.serve.openai_schema import (
    ChatRequest,
    CompletionRequest,
    Sampling,
    clamped_header,
    settings_for,
)

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}
_DONE = object()
DONE = "data: [DONE]\n\n"


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


class Running:
    """A job's generation, started in a worker thread: its future, the streamed deltas, the cancel flag."""

    def __init__(self, future: asyncio.Future, queue: asyncio.Queue, cancel: Cancel):
        self.future, self.queue, self.cancel = future, queue, cancel


async def _start(pool: ModelPool, job: Job, stream: bool, request: Request) -> Running:
    """Take a generation slot and start the job. Called before any response is begun, so a full queue is a
    503 with its JSON body for a streaming request too. A client that leaves while it waits loses its place."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = Cancel()

    def on_text(i: int, delta: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (i, delta))

    work = _worker(pool, job, on_text if stream else None, cancel)
    try:
        future = await pool.start(work, exclusive=job.exclusive, gone=request.is_disconnected)
    except ClientGone:
        raise ApiError(499, "the client disconnected while its request waited", code="client_closed_request",
                       kind="server_error") from None  # fmt: skip
    future.add_done_callback(lambda _: queue.put_nowait(_DONE))
    return Running(future, queue, cancel)


def _cancel(pool: ModelPool, running: Running) -> None:
    if not running.future.done():
        running.cancel.set()
        pool.stats.cancelled += 1


async def _run(pool: ModelPool, running: Running, request: Request) -> list[Any]:
    """The Generations of a job not streamed; a client that disconnects meanwhile has its generation stopped."""
    try:
        while not running.future.done():
            await asyncio.wait({running.future}, timeout=0.5)
            if not running.future.done() and await request.is_disconnected():
                _cancel(pool, running)
                break
        gens = await running.future
    finally:  # the handler itself cancelled (shutdown): the thread must not run on to max_tokens
        _cancel(pool, running)
    pool.stats.served += 1
    return gens


async def _stream(pool: ModelPool, running: Running) -> AsyncIterator[tuple[int, str] | list[Any] | ApiError]:
    """(choice index, text delta) as they are produced, then the list of Generations (or the ApiError that
    ended them). Closing the iterator early (the client went away) stops the generation at its next token."""
    try:
        while (item := await running.queue.get()) is not _DONE:
            yield item
        pool.stats.served += 1
        try:
            yield running.future.result()
        except Exception:  # noqa: BLE001 - a failed generation ends the stream with an error event
            yield internal_error("generation failed")
    finally:
        _cancel(pool, running)


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
        return await _respond(pool, req, request, chat=True)

    @api.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        return await _respond(pool, req, request, chat=False)

    return api


async def _respond(pool: ModelPool, req: Sampling, request: Request, chat: bool):
    job = _encode(pool, req, chat=chat)
    rid, created = _ids("chatcmpl" if chat else "cmpl")
    head = {"id": rid, "created": created, "model": job.served.id}
    headers = clamped_header(job.clamped)
    running = await _start(pool, job, stream=req.stream, request=request)
    done = _request_log(rid, job, req.user)
    if req.stream:
        events = _events(pool, job, running, head, _include_usage(req), chat, done)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"}
        )
    gens = await _run(pool, running, request)
    done(gens)
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "finish_reason": FINISH[g.finish_reason]} for i, g in enumerate(gens)]  # fmt: skip
    else:
        choices = [{"index": i, "text": g.text, "logprobs": None, "finish_reason": FINISH[g.finish_reason]}
                   for i, g in enumerate(gens)]  # fmt: skip
    body = {**head, "object": "chat.completion" if chat else "text_completion", "choices": choices,
            "usage": _usage(gens, job.n)}  # fmt: skip
    return JSONResponse(body, headers=headers)


def _request_log(rid: str, job: Job, user: str | None) -> Callable[[list[Any]], None]:
    """What logs one answered request to the server's log: its id, model, OpenAI's `user` (the end user a
    client names, so abuse can be traced to them), tokens and time."""
    started = time.perf_counter()

    def done(gens: list[Any]) -> None:
        usage = _usage(gens, job.n)
        log.info("%s model=%s user=%s tokens=%d+%d %.0f ms", rid, job.served.id, user or "-",
                 usage["prompt_tokens"], usage["completion_tokens"], 1000 * (time.perf_counter() - started))  # fmt: skip

    return done


def _include_usage(req: Sampling) -> bool:
    return bool(req.stream_options and req.stream_options.include_usage)


def _usage(gens: list[Any], n: int) -> dict[str, int]:
    """Each prompt counts once however many choices (n) it has, as OpenAI counts it."""
    prompt = sum(g.prompt_tokens for g in gens[::n])
    completion = sum(g.new_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _events(
    pool: ModelPool,
    job: Job,
    running: Running,
    head: dict,
    usage: bool,
    chat: bool,
    done: Callable[[list[Any]], None],
) -> AsyncIterator[str]:
    """The server-sent events of a streamed job: OpenAI's chat chunks (each choice opens with its role) or
    text-completion chunks, a last chunk per choice with its finish reason, the usage if asked, [DONE]."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(i: int, text: str | None = None, finish: str | None = None, opening: bool = False) -> str:
        if chat:
            delta = (
                {"role": "assistant", "content": ""}
                if opening
                else ({} if text is None else {"content": text})
            )
            choice = {"index": i, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": i, "text": text or "", "logprobs": None, "finish_reason": finish}
        return sse({**head, "object": kind, "choices": [choice]})

    opened: set[int] = set()
    async for item in _stream(pool, running):
        if isinstance(item, ApiError):
            yield sse(item.body()) + DONE
            return
        if isinstance(item, list):
            done(item)
            for i in range(len(job.prompts) if chat else 0):
                if i not in opened:  # a choice that produced no text still opens with its role
                    yield chunk(i, opening=True)
            for i, g in enumerate(item):
                yield chunk(i, finish=FINISH[g.finish_reason])
            if usage:
                yield sse({**head, "object": kind, "choices": [], "usage": _usage(item, job.n)})
            yield DONE
            return
        i, delta = item
        if chat and i not in opened:
            opened.add(i)
            yield chunk(i, opening=True)
        yield chunk(i, delta)
