"""Shared by the Ray and Slurm tests: a corpus with planted duplicates, a recipe over it, `llmforge data build`
in a child process (as a user runs it)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parents[1]


def planted_corpus(path: Path) -> Path:
    """Three files of 45 distinct documents plus 5 exact and 5 near copies (one word changed) in other files."""
    rng = random.Random(0)
    vocab = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "klmnprst"]
    distinct = [" ".join(rng.choices(vocab, k=150)) for _ in range(45)]
    near = [t.replace(t.split()[3], "changed", 1) for t in distinct[:5]]
    texts = distinct + distinct[10:15] + near
    path.mkdir(parents=True)
    for f in range(3):
        rows = texts[f::3]
        (path / f"{f}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    return path


def recipe(path: Path, run_dir: Path, src: Path, **data: object) -> Path:
    """A recipe building `src` in 2 tasks (whitespace, exact dedup, MinHash) into `run_dir`; `data`: more
    `[data]` keys."""
    table = {
        "run": {"name": run_dir.name, "out_dir": str(run_dir.parent)},
        "data": {
            "tasks": 2,
            "workers": 2,
            **data,
            "sources": [{"name": "web", "type": "jsonl", "path": str(src)}],
            "steps": [{"type": "whitespace"}, {"type": "exact_dedup"}, {"type": "minhash"}],
        },
    }
    path.write_text(tomli_w.dumps(table))
    return path


def build(recipe_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmforge", "data", "build", str(recipe_path), *args],
        cwd=REPO,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
