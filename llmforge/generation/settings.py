"""Sampling settings shared by `generate`, `chat` and (later) `serve`, the bias probes and rlhf rollouts.

Torch-free: the CLI builds and checks these before anything heavy is imported.

Sampling follows the usual pipeline of `transformers.generate`: repetition penalty (Keskar et al. 2019, CTRL:
logits of tokens already present divided by θ when positive, multiplied when negative), temperature (logits / T),
top-k (keep the k most likely tokens), nucleus / top-p (Holtzman et al. 2020: the smallest set whose
probability reaches p), then a draw. Temperature 0 means greedy decoding (argmax), not a division by zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from llmforge.console import UserError


@dataclass(frozen=True)
class SamplingLimits:
    """What a server lets a client ask for (`SamplingSettings.clamped`)."""

    max_new_tokens: int = 1024
    max_temperature: float = 2.0
    max_top_k: int = 1000
    max_repetition_penalty: float = 2.0
    max_stop: int = 8  # number of stop strings
    max_stop_chars: int = 64  # length of one stop string


@dataclass(frozen=True)
class SamplingSettings:
    """How to continue a prompt. `temperature = 0` is greedy; `top_k = 0` and `top_p = 1` switch those filters
    off; `seed` reseeds torch before each prompt (reproducible samples); generation ends early at an end-of-
    sequence id or as soon as the new text contains one of `stop` (the text is cut before it)."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def checked(self) -> SamplingSettings:
        """These settings, or UserError naming the first option out of range (NaN is out of every range)."""
        _require(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
                 f"--max-new-tokens must be ≥ 1 (got {self.max_new_tokens})")  # fmt: skip
        _require(_finite(self.temperature) and self.temperature >= 0,
                 f"--temperature must be ≥ 0 (0 = greedy; got {self.temperature})")  # fmt: skip
        _require(_finite(self.top_p) and 0 < self.top_p <= 1,
                 f"--top-p must be in (0, 1] (1 = off; got {self.top_p})")  # fmt: skip
        _require(isinstance(self.top_k, int) and self.top_k >= 0,
                 f"--top-k must be ≥ 0 (0 = off; got {self.top_k})")  # fmt: skip
        _require(_finite(self.repetition_penalty) and self.repetition_penalty > 0,
                 f"--repetition-penalty must be > 0 (1 = off; got {self.repetition_penalty})")  # fmt: skip
        _require(self.seed is None or (isinstance(self.seed, int) and 0 <= self.seed < 2**63),
                 f"--seed must be an integer in [0, 2^63) (got {self.seed})")  # fmt: skip
        for s in self.stop:
            _require(isinstance(s, str) and s != "", "--stop: a stop string must not be empty")
        return self

    def clamped(self, limits: SamplingLimits = SamplingLimits()) -> SamplingSettings:
        """These settings pulled into the safe ranges of `limits` (for a server: a client cannot ask for 10⁶
        tokens or a temperature of 50). Values outside any valid range (negative, NaN) are not clamped: call
        `checked()` on the result to refuse them."""
        return replace(
            self,
            max_new_tokens=min(self.max_new_tokens, limits.max_new_tokens),
            temperature=min(self.temperature, limits.max_temperature),
            top_k=min(self.top_k, limits.max_top_k),
            repetition_penalty=min(self.repetition_penalty, limits.max_repetition_penalty),
            stop=tuple(s[: limits.max_stop_chars] for s in self.stop[: limits.max_stop]),
        )

    def to_generation_kwargs(self, stop_ids: list[int], pad_token_id: int | None = None) -> dict[str, Any]:
        """Keyword arguments for `model.generate`. Every sampling knob is given explicitly, so the checkpoint's
        generation_config (or transformers' defaults, e.g. top_k = 50) never changes what was asked for; greedy
        decoding takes none of them."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "eos_token_id": list(stop_ids) or None,
            "pad_token_id": pad_token_id if pad_token_id is not None else (stop_ids[0] if stop_ids else None),
            "use_cache": True,
            "num_beams": 1,
        }
        if self.greedy:  # the sampling knobs do not apply (transformers warns when they are given)
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs

    @property
    def longest_stop(self) -> int:
        return max((len(s) for s in self.stop), default=0)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def unescape_stop(text: str) -> str:
    r"""A stop string as typed on a command line: `\n`, `\t` and `\\` mean newline, tab and a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
