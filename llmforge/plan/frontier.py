"""Who trained on how many tokens: well-known models (`frontier_models.json`, each with its source) placed
against the Chinchilla-optimal tokens for their size (approach 1, Hoffmann et al. 2022 Table 3)."""

from __future__ import annotations

import json
from pathlib import Path

from llmforge.plan.observations import Observation
from llmforge.plan.scaling_laws import allocate

MODELS = Path(__file__).with_name("frontier_models.json")
UNDER, OVER = 0.5, 2.0  # tokens below half / above twice the Chinchilla-optimal count


def verdict(ratio: float) -> str:
    if ratio < UNDER:
        return "under-trained"
    if ratio > OVER:
        return "over-trained"
    return "near-optimal"


def place(name: str, params: float, tokens: float, **extra) -> dict:
    optimal = allocate("chinchilla", params=params).tokens
    return {
        "name": name,
        "params": params,
        "tokens": tokens,
        "tokens_per_param": tokens / params,
        "chinchilla_tokens": optimal,
        "ratio_to_chinchilla": tokens / optimal,
        "verdict": verdict(tokens / optimal),
        **extra,
    }


def frontier(runs: list[Observation] = ()) -> list[dict]:
    models = json.loads(MODELS.read_text())["models"]
    rows = [
        place(m["name"], m["params"], m["tokens"], year=m["year"], source=m["source"], ours=False)
        for m in models
    ]
    rows += [place(r.name, r.params, r.tokens, ours=True) for r in runs]
    return rows
