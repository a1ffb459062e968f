"""`[data]` table: sources with mixture weights and an ordered list of pipeline steps."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from llmforge.recipe_base import Table


class SourceConfig(Table):
    name: str = Field(min_length=1)
    type: Literal["jsonl", "parquet", "text", "warc", "hf", "python-stdlib"]
    path: str | None = None
    text_key: str = "text"
    weight: float = Field(1.0, gt=0)
    max_epochs: float = Field(4.0, ge=1)
    limit: int | None = Field(None, ge=1)


class StepConfig(Table):
    """One pipeline step: `type` picks it, the other keys are its options (checked by the data stage)."""

    model_config = ConfigDict(extra="allow")
    type: str


class DataConfig(Table):
    sources: list[SourceConfig] = Field(min_length=1)
    steps: list[StepConfig] = Field(default_factory=list)
    workers: int = Field(1, ge=1)
    on_bad_record: Literal["fail", "skip"] = "fail"
