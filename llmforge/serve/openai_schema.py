"""Request bodies of the OpenAI-compatible routes and their translation to `SamplingSettings`.

A field this server does not act on is refused (400, naming it) rather than ignored: `logprobs`, `echo`,
`suffix`, `best_of`, `tools` and nonzero `presence_penalty` / `frequency_penalty` (use `repetition_penalty`, an
extension, like `top_k`). Values in OpenAI's valid ranges are accepted and then clamped into the server's
limits (temperature ≤ 2, top_k ≤ 1000, repetition_penalty ≤ 2). `max_tokens` above the server's limit is
refused, not cut, since a client that asked for 4000 tokens and got 512 would not know why its answer stopped;
so are more than 8 stop strings or one over 64 characters (a cut one would stop elsewhere). `top_p = 0` leaves
only the most likely token: greedy. `user` goes to the server's log with the request; a message `name` is
refused (the chat templates have no speaker names).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmforge.generation.settings import SamplingSettings
from llmforge.serve.errors import ApiError
from llmforge.serve.limits import ServerLimits


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _no_names(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("not supported: the chat templates served here have no speaker names")
        return value

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


def _zero(name: str):
    def check(value: float | None) -> float | None:
        if value not in (None, 0, 0.0):
            raise ValueError(f"not supported (use repetition_penalty, e.g. 1.2, instead of {name})")
        return value

    return check


class Sampling(_Body):
    """The sampling fields both routes share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    _presence = field_validator("presence_penalty")(_zero("presence_penalty"))
    _frequency = field_validator("frequency_penalty")(_zero("frequency_penalty"))

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value == "":
            raise ValueError("a stop string must not be empty")
        return value


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]


def settings_for(
    req: Sampling, limits: ServerLimits, context_room: int | None
) -> tuple[SamplingSettings, dict]:
    """The settings a request asks for, clamped into `limits`, and {field: value used} for each clamped field.
    `context_room` (context − prompt tokens) caps the default max_tokens, so an omitted one still fits."""
    if req.n > limits.max_n:
        raise ApiError(400, f"n = {req.n}: this server returns at most {limits.max_n} choices", param="n")
    asked = req.max_completion_tokens or req.max_tokens
    if asked is not None and asked > limits.max_tokens:
        raise ApiError(
            400,
            f"max_tokens = {asked} exceeds this server's limit of {limits.max_tokens} (serve --max-tokens)",
            param="max_tokens",
            code="max_tokens_exceeded",
        )
    if asked is None:
        asked = limits.default_max_tokens
        if context_room is not None:
            asked = max(1, min(asked, context_room))
    stop = _stops(req.stop, limits)
    defaults = SamplingSettings()
    temperature = defaults.temperature if req.temperature is None else req.temperature
    wanted = SamplingSettings(
        max_new_tokens=asked,
        temperature=0.0 if req.top_p == 0 else temperature,  # only the most likely token is left: greedy
        top_p=defaults.top_p if not req.top_p else req.top_p,
        top_k=defaults.top_k if req.top_k is None else req.top_k,
        repetition_penalty=defaults.repetition_penalty
        if req.repetition_penalty is None
        else req.repetition_penalty,
        seed=req.seed,
        stop=stop,
    )
    used = wanted.clamped(limits.sampling)
    before, after = asdict(wanted), asdict(used)
    clamped = {k: after[k] for k in after if after[k] != before[k]}
    return used, clamped


def _stops(stop: str | list[str] | None, limits: ServerLimits) -> tuple[str, ...]:
    """The stop strings, refused (not cut) beyond the server's limits: a cut stop string would stop elsewhere."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    most, chars = limits.sampling.max_stop, limits.sampling.max_stop_chars
    if len(stops) > most:
        raise ApiError(400, f"stop: at most {most} stop strings (got {len(stops)})", param="stop")
    if any(len(s) > chars for s in stops):
        raise ApiError(400, f"stop: a stop string may have at most {chars} characters", param="stop")
    return stops


def clamped_header(clamped: dict[str, Any]) -> dict[str, str]:
    if not clamped:
        return {}
    shown = {k: (len(v) if isinstance(v, tuple) else v) for k, v in clamped.items()}
    return {"X-LLMForge-Clamped": ", ".join(f"{k}={v}" for k, v in shown.items())}
