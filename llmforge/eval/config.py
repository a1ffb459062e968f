"""`[eval]` table: which benchmarks to run and how (flags of `llmforge eval run` override it)."""

from __future__ import annotations

from pydantic import Field

from llmforge.recipe_base import RecipePath, Table


class EvalConfig(Table):
    tasks: list[str] = Field(default_factory=list)  # task names or presets (see `llmforge eval tasks`)
    num_fewshot: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    data_dir: RecipePath | None = None  # public benchmark files: run the tasks offline
    device: str | None = None
    max_gen_toks: int | None = Field(None, ge=1)
