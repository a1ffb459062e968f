"""Command-line numbers: `1e21`, `7B`, `1.4T`, `124M`, checked to be finite and positive (else exit 2)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from llmforge.console import UserError

SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}


def positive(option: str, text: str | float | None, *, allow_zero: bool = False) -> float | None:
    """`text` as a finite number > 0 (≥ 0 with allow_zero); None stays None."""
    if text is None:
        return None
    raw = str(text).strip().replace("_", "").replace(",", "")
    scale = SUFFIXES.get(raw[-1:].lower())
    try:
        value = float(raw[:-1] if scale else raw) * (scale or 1.0)
    except ValueError:
        raise UserError(f"{option} {text}: not a number (e.g. 1e21, 7B, 1.4T)") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{option} {text}: expected a finite number {'≥' if allow_zero else '>'} 0")
    return value


def positive_int(option: str, text: str) -> int:
    value = positive(option, text)
    if value != int(value):
        raise UserError(f"{option} {text}: expected a positive integer")
    return int(value)


def fraction(option: str, text: str | float) -> float:
    value = positive(option, text)
    if value > 1:
        raise UserError(f"{option} {text}: expected a fraction in (0, 1]")
    return value


def choice(option: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise UserError(f"{option} {value}: unknown; choose one of {', '.join(map(str, choices))}")
    return value


def number_list(option: str, text: str) -> list[float]:
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"{option} {text!r}: expected a comma-separated list of numbers, e.g. 1e15,3e15,1e16")
    return [positive(option, item) for item in items]
