"""`[eval]` table: which benchmarks to run and how."""

from __future__ import annotations

from pydantic import Field

from llmforge.recipe_base import Table


class EvalConfig(Table):
    tasks: list[str] = Field(default_factory=list)
    num_fewshot: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    data_dir: str | None = None
