"""What one client may ask of the server (torch-free: the CLI builds these before loading anything)."""

from __future__ import annotations

from dataclasses import dataclass

from llmforge.generation.settings import SamplingLimits


@dataclass(frozen=True)
class ServerLimits:
    """Request limits: a body over `max_body_bytes` is refused (413); `max_tokens` over `max_tokens` is refused
    (400); temperature, top_k, repetition penalty and stop strings are clamped into `sampling`'s ranges (the
    response says which, in the `X-LLMForge-Clamped` header). At most `parallel` generations run at once; when
    `max_waiting` more already wait for a slot, a new request gets 503 at once instead of queueing forever."""

    max_tokens: int = 512
    max_body_bytes: int = 1_000_000
    max_n: int = 4
    max_prompts: int = 16  # prompts in one /v1/completions request
    parallel: int = 2
    max_waiting: int = 32
    default_max_tokens: int = 128

    @property
    def sampling(self) -> SamplingLimits:
        return SamplingLimits(max_new_tokens=self.max_tokens)
