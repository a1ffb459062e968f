"""`[plan]` table: defaults for `llmforge plan` when it is given a recipe (ladder bases, cost inputs)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from llmforge.recipe_base import Table


class PlanConfig(Table):
    method: Literal["chinchilla", "approach2", "approach3", "epoch", "kaplan", "tokens-per-param"] = (
        "chinchilla"
    )
    gpu: str | None = None
    gpus: int = Field(1, ge=1)
    mfu: float = Field(0.4, gt=0, le=1)
    price_per_gpu_hour: float | None = Field(None, ge=0)
    # `llmforge plan ladder` defaults
    ladder_budgets: list[PositiveFloat] = Field(default_factory=list)
    ladder_sizes: int = Field(5, ge=1)
