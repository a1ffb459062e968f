"""The bad-input battery: every user error exits 2 with one line naming the file/key and what is expected,
every runtime failure exits 1 with what to change, and no traceback appears without `--debug`.

A new case is one line in CASES: (id, argv, expected exit code, a phrase of the message). `argv` may use the
placeholders of `World` ({recipe}, {tmp}, {missing}, {dataset}, {tokenizer}, {tokens}, {checkpoint}, {shared});
a case that needs a damaged file first names a `prepare` function (below) that builds it and returns more
placeholders. Artifacts are built once per session and copied when a case would change them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import tomli_w
from conftest import SHARED_DATA, run_cli


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    rc: int
    phrase: str
    prepare: Callable[[World, Path], dict[str, str]] | None = None


class World:
    """Lazily built inputs shared by every case (built once per test session)."""

    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def recipe(self) -> Path:
        """A small recipe (jsonl of Shakespeare speeches, tiny tokenizer and llama) writing under root."""
        speeches = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
        source = self.root / "source.jsonl"
        source.write_text(
            "".join(json.dumps({"text": "\n\n".join(speeches[i : i + 3])}) + "\n" for i in range(0, 240, 3))
        )
        recipe = self.root / "recipe.toml"
        recipe.write_text(
            tomli_w.dumps(
                {
                    "run": {"name": "b", "out_dir": str(self.root)},
                    "data": {"sources": [{"name": "shakespeare", "type": "jsonl", "path": str(source)}]},
                    "tokenizer": {"vocab_size": 300, "val_fraction": 0.2},
                    "model": {"arch": "llama", "n_layers": 1, "d_model": 32, "n_heads": 2, "max_seq_len": 64},
                    "train": {
                        "seq_len": 64,
                        "global_batch_tokens": 256,
                        "micro_batch": 4,
                        "max_steps": 4,
                        "warmup_steps": 1,
                        "eval_every": 2,
                        "eval_tokens": 512,
                        "checkpoint_every": 2,
                    },
                }
            )
        )
        return recipe

    def _stage(self, *argv: str) -> None:
        r = run_cli(*argv, str(self.recipe), "--quiet")
        assert r.returncode == 0, r.stderr[-3000:]

    @cached_property
    def dataset(self) -> Path:
        self._stage("data", "build")
        return self.root / "b" / "dataset"

    @cached_property
    def tokenizer(self) -> Path:
        assert self.dataset.is_dir()
        self._stage("tokenize", "train")
        return self.root / "b" / "tokenizer"

    @cached_property
    def tokens(self) -> Path:
        assert self.tokenizer.is_dir()
        self._stage("tokenize", "encode")
        return self.root / "b" / "tokens"

    @cached_property
    def checkpoint(self) -> Path:
        assert self.tokens.is_dir()
        self._stage("pretrain")
        return sorted((self.root / "b" / "checkpoints").glob("step-*"))[-1]

    def placeholders(self, argv: list[str]) -> dict[str, str]:
        """Only the artifacts a case names are built."""
        wanted = {name for name in ("recipe", "dataset", "tokenizer", "tokens", "checkpoint") if f"{{{name}}}" in " ".join(argv)}
        return {name: str(getattr(self, name)) for name in wanted}


def copy_of(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    return dst


# --- prepare functions: build a damaged input in the case's tmp dir, return its placeholders -------------


def empty_recipe(world: World, tmp: Path) -> dict[str, str]:
    (tmp / "empty.toml").write_text("")
    return {"empty": str(tmp / "empty.toml")}


CASES = [
    # plan
    Case("plan negative compute", ["plan", "--compute", "-1"], 2, "--compute -1"),
    Case("plan disagreeing budgets", ["plan", "--compute", "1e21", "--params", "1B"], 2, "disagree"),
    Case("plan memory zero stage", ["plan", "memory", "--params", "7B", "--zero", "5"], 2, "--zero 5"),
    Case("plan shape arch", ["plan", "shape", "--arch", "nope", "--layers", "2", "--d-model", "64", "--heads", "2"], 2, "gpt2"),
    # recipes
    Case("recipe unknown key", ["recipe", "check", "{recipe}", "--set", "tokenizer.vocab_sise=1"], 2, "tokenizer.vocab_size"),
    Case("recipe missing", ["recipe", "check", "{missing}"], 2, "{missing}"),
    # artifacts
    Case("inspect missing", ["inspect", "{missing}"], 2, "{missing}"),
    Case("data stats wrong kind", ["data", "stats", "{tokenizer}"], 2, "expected a dataset artifact"),
    Case("tokenize compare missing", ["tokenize", "compare", "{missing}", "--data", "{dataset}"], 2, "{missing}"),
    Case("pretrain missing recipe", ["pretrain", "{missing}"], 2, "{missing}"),
    Case("eval compare missing", ["eval", "compare", "{missing}"], 2, "{missing}"),
    Case("eval perplexity missing", ["eval", "perplexity", "{missing}", "--tokens", "{missing}"], 2, "{missing}"),
    # --- foundation: recipe loading, CLI, inspect (add cases above this line) ---
    # --- plan (add cases above this line) ---
    # --- data (add cases above this line) ---
    # --- tokenize (add cases above this line) ---
    # --- pretrain (add cases above this line) ---
    # --- eval (add cases above this line) ---
]


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return World(tmp_path_factory.mktemp("world"))


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(world, tmp_path, case):
    values = {"tmp": str(tmp_path), "missing": str(tmp_path / "missing"), "shared": str(SHARED_DATA)}
    values.update(world.placeholders(case.argv))
    if case.prepare:
        values.update(case.prepare(world, tmp_path))
    argv = [a.format(**values) for a in case.argv]
    r = run_cli(*argv, env={"COLUMNS": "80"})
    message = r.stderr.strip()
    assert r.returncode == case.rc, f"{argv}: exit {r.returncode}\n{message[-3000:]}"
    assert "Traceback" not in message, message[-3000:]
    assert case.phrase.format(**values) in message, message[-3000:]
    if case.rc == 2:
        assert r.stdout == ""
        (line,) = message.splitlines()  # one line, even at 80 columns
        assert line.startswith("error: "), message
