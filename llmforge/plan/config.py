"""`[plan]` table: defaults for `llmforge plan` when it is given a recipe (ladder bases, cost inputs)."""

from __future__ import annotations

from pydantic import Field

from llmforge.recipe_base import Table


class PlanConfig(Table):
    method: str = "chinchilla"
    gpu: str | None = None
    gpus: int = Field(1, ge=1)
    mfu: float = Field(0.4, gt=0, le=1)
    price_per_gpu_hour: float | None = Field(None, ge=0)
