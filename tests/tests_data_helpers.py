"""Helpers shared by the data tests: build a dataset from a `[data]` table in a temp dir."""

from __future__ import annotations

from pathlib import Path

from llmforge.artifacts.dataset import iter_documents
from llmforge.data.build import build_dataset
from llmforge.data.config import DataConfig


def build(tmp_path: Path, table: dict, seed: int = 0, run: str = "run") -> tuple[dict, dict[str, str]]:
    """(report, id → text) of a build of `table` into `tmp_path/run`."""
    run_dir = tmp_path / run
    report = build_dataset(DataConfig.model_validate(table), run_dir, seed)
    return report, {d["id"]: d["text"] for d in iter_documents(run_dir / "dataset")}
