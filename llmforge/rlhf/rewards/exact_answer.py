"""Exact final-answer match, the GSM8K reward of RL on verifiable answers (Cobbe et al. 2021's final-answer
accuracy; Shao et al. 2024 train GRPO on it): 1.0 when the reply's final number equals the reference's, else 0.

The reference is the `answer` column (`[[rlhf.prompts]] answer_field`); GSM8K writes its final answer after
`####`. The reply's final answer is the number after its last `####` or "The answer is", else its last number."""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_MARKED = re.compile(r"(?:####|[Tt]he answer is:?)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")


def final_number(text: str) -> str | None:
    marked = _MARKED.findall(text)
    found = marked[-1] if marked else (_NUMBER.findall(text) or [None])[-1]
    if found is None:
        return None
    value = found.replace(",", "").rstrip(".")
    return value[:-2] if value.endswith(".0") else value


def score(
    prompts: list[str], completions: list[str], answer: list[Any] | None = None, **_: Any
) -> list[float]:
    if answer is None:
        raise ValueError("exact_answer needs the reference answers: set answer_field in [[rlhf.prompts]]")
    return [
        1.0 if (got := final_number(reply)) is not None and got == final_number(str(ref)) else 0.0
        for reply, ref in zip(completions, answer, strict=True)
    ]
