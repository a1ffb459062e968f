"""Docstring → function-body pairs from a dataset artifact of Python source (`llmforge.finetune.docstring_pairs`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmforge.artifacts import content_hash, read_manifest, require, write_manifest
from llmforge.artifacts.checks import check_artifact
from llmforge.artifacts.split import is_val, split_record
from llmforge.console import UserError
from llmforge.finetune.docstring_pairs import PROMPT_PREFIX, SKIP_REASONS, build_docstring_pairs

LONG_BODY = "\n".join(f"    x += {i}" for i in range(13))

MODULE_A = f'''"""Module a."""
import os


def add(a, b):
    """Return a + b."""
    total = a + b
    return total


class Box:
    """A box."""

    def __init__(self, x):
        """Keep x."""
        self.x = x

    @property
    def double(self):
        \'\'\'Twice x.\'\'\'
        # a comment
        return self.x * 2

    def todo(self):
        """Not yet."""
        raise NotImplementedError("later")

    def nothing(self):
        """Only a docstring."""

    def text(self):
        """Text."""
        return """
at column 0"""


async def fetch(url: str,
                timeout: float = 1.0) -> bytes:
    """Fetch url."""
    async with open(url) as f:
        return await f.read()


def outer():
    """Outer."""
    def inner():
        """Inner."""
        return 1
    return inner


def stub():
    """Stub."""
    pass


def dots():
    """Dots."""
    ...


def long_one():
    """Too many lines."""
    x = 0
{LONG_BODY}


def wordy():
    """{"Many words here. " * 50}"""
    return None


def inline(x): "Same line."; return x


def no_doc():
    return os.sep
'''

MODULE_B = '''def add(a, b):
    """Return a + b."""
    total = a + b
    return total


def mul(a, b):
    """Return a * b."""
    return a * b
'''


def generated(i: int, name: str = "f") -> str:
    return f'def {name}{i}(x):\n    """Scale x by {i}."""\n    return x * {i}\n'


def write_dataset(root: Path, docs: list[tuple[str, str]]) -> Path:
    """A dataset artifact at `root` holding `docs` ((id, text) pairs) in one jsonl shard."""
    (root / "data").mkdir(parents=True)
    rows = [{"text": text, "id": doc_id, "metadata": {"source": "test"}} for doc_id, text in docs]
    (root / "data" / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_manifest(root, "dataset")
    return root


def write_tokens(root: Path, val_fraction: float, split: dict | None = None) -> Path:
    """A (token-less) tokens artifact whose index.json records the origin-document split at `val_fraction`."""
    for name in ("train", "val"):
        (root / name).mkdir(parents=True)
        (root / name / "00000.bin").write_bytes(b"")
    shards = {
        name: {
            "tokens": 0,
            "documents": 0,
            "shards": [{"file": f"{name}/00000.bin", "tokens": 0, "documents": 0}],
        }
        for name in ("train", "val")
    }
    index = {
        "format": 1,
        "dtype": "uint16",
        "vocab_size": 10,
        "eos_id": 0,
        "split": split_record(val_fraction) if split is None else split,
        "splits": shards,
    }
    (root / "index.json").write_text(json.dumps(index))
    write_manifest(root, "tokens")
    return root


def rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


MANY = [(f"gen/m{i:02d}.py", generated(i) + "\n\n" + generated(i, "g")) for i in range(40)]
PLANTED = [
    ("pkg/a.py", MODULE_A),
    ("pkg/b.py", MODULE_B),
    ("broken.py", "def broken(:\n    pass\n"),
    ("nul.py", "x = 1\x00\n"),
    ("gen/m03.py#1", generated(3, "h")),  # an up-sampled copy's id: same origin document as gen/m03.py
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pairs")
    dataset = write_dataset(root / "dataset", PLANTED + MANY)
    report = build_docstring_pairs(dataset, root / "instructions")
    return root / "instructions", report


def by_name(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["source"], r["name"]): r for split in ("train", "val") for r in rows(out, split)}


def test_exact_prompt_and_completion_of_a_planted_function(built):
    out, _ = built
    pair = by_name(out)[("pkg/a.py", "add")]
    assert pair["prompt"] == PROMPT_PREFIX + 'def add(a, b):\n    """Return a + b."""\n'
    assert pair["completion"] == "    total = a + b\n    return total\n"


def test_methods_async_and_nested_functions(built):
    out, _ = built
    pairs = by_name(out)
    init = pairs[("pkg/a.py", "Box.__init__")]
    assert init["prompt"] == PROMPT_PREFIX + 'def __init__(self, x):\n    """Keep x."""\n'
    assert init["completion"] == "    self.x = x\n"
    double = pairs[("pkg/a.py", "Box.double")]  # decorator left out, quotes and comment as written
    assert double["prompt"] == PROMPT_PREFIX + "def double(self):\n    '''Twice x.'''\n"
    assert double["completion"] == "    # a comment\n    return self.x * 2\n"
    fetch = pairs[("pkg/a.py", "fetch")]
    assert fetch["prompt"] == (
        PROMPT_PREFIX
        + 'async def fetch(url: str,\n                timeout: float = 1.0) -> bytes:\n    """Fetch url."""\n'
    )
    assert fetch["completion"] == "    async with open(url) as f:\n        return await f.read()\n"
    inner = pairs[("pkg/a.py", "outer.<locals>.inner")]
    assert inner["prompt"] == PROMPT_PREFIX + 'def inner():\n    """Inner."""\n'
    assert inner["completion"] == "    return 1\n"
    assert pairs[("pkg/a.py", "outer")]["completion"].startswith('    def inner():\n        """Inner."""\n')


def test_prompt_and_completion_are_the_source(built):
    """Without the instruction, prompt + completion is the function's source text as written."""
    out, _ = built
    for pair in by_name(out).values():
        text = pair["prompt"].removeprefix(PROMPT_PREFIX) + pair["completion"]
        source = dict(PLANTED + MANY)[pair["source"]]
        if not pair["name"].startswith(("Box.", "outer.<locals>.")):  # a top-level def: verbatim
            assert text in source
        assert pair["completion"].endswith("\n") and pair["completion"].startswith("    ")


def test_skip_reasons_are_counted(built):
    out, report = built
    assert report["skipped"] == {
        "layout": 2,  # `inline` (docstring on the def line), `Box.text` (a string at column 0)
        "empty_body": 1,  # Box.nothing
        "stub_body": 3,  # Box.todo, stub, dots
        "long_body": 1,  # long_one: 14 lines > 12
        "too_long": 1,  # wordy: > 700 characters
        "duplicate": 1,  # add again in pkg/b.py
    }
    assert set(report["skipped"]) == set(SKIP_REASONS)
    assert report["documents"] == len(PLANTED) + len(MANY)
    assert report["unparsable"] == 2 and report["parsed"] == report["documents"] - 2
    names = set(by_name(out))
    for skipped in (
        "inline",
        "Box.text",
        "Box.nothing",
        "Box.todo",
        "stub",
        "dots",
        "long_one",
        "wordy",
        "no_doc",
    ):
        assert ("pkg/a.py", skipped) not in names
    assert ("pkg/b.py", "add") not in names and ("pkg/b.py", "mul") in names
    assert report["pairs"] == report["with_docstring"] - sum(report["skipped"].values())
    assert report["pairs"] == report["train"] + report["val"] == len(names)
    assert json.loads((out / "report.json").read_text())["skipped"] == report["skipped"]


def test_limits_are_options(tmp_path):
    dataset = write_dataset(tmp_path / "dataset", [("pkg/a.py", MODULE_A)])
    report = build_docstring_pairs(dataset, tmp_path / "out", max_body_lines=20, max_chars=2000)
    assert report["skipped"]["long_body"] == 0 and report["skipped"]["too_long"] == 0
    report = build_docstring_pairs(dataset, tmp_path / "out", max_body_lines=1)
    assert ("pkg/a.py", "add") not in by_name(tmp_path / "out")  # two lines
    assert report["skipped"]["long_body"] > 1


def test_seeded_split_keeps_each_document_in_one_split(built, tmp_path):
    out, report = built
    train = {r["source"] for r in rows(out, "train")}
    val = {r["source"] for r in rows(out, "val")}
    assert train and val and not train & val
    origins = {s.split("#")[0] for s in train | val}
    assert report["val_documents"] == len(val) and report["train_documents"] == len(train)
    assert len({s.split("#")[0] for s in val}) == round(0.1 * len(origins))
    # the copy of gen/m03.py is with its origin
    assert ("gen/m03.py" in val) == ("gen/m03.py#1" in val)
    again = build_docstring_pairs(
        write_dataset(tmp_path / "dataset", PLANTED + MANY), tmp_path / "other", seed=1
    )
    assert again["pairs"] == report["pairs"]
    assert {r["source"] for r in rows(tmp_path / "other", "val")} != val


def test_split_follows_the_tokens_artifact(tmp_path):
    dataset = write_dataset(tmp_path / "dataset", PLANTED + MANY)
    tokens = write_tokens(tmp_path / "tokens", 0.3)
    report = build_docstring_pairs(dataset, tmp_path / "out", tokens=tokens)
    for split in ("train", "val"):
        for r in rows(tmp_path / "out", split):
            assert is_val({"id": r["source"], "text": ""}, 0.3) == (split == "val"), r["source"]
    assert report["val"] > 0 and report["train"] > 0
    assert report["split"] == {"by": "tokens", "val_fraction": 0.3}
    manifest = read_manifest(tmp_path / "out")
    assert [ref["kind"] for ref in manifest["inputs"]] == ["dataset", "tokens"]


def test_artifact_is_whole_and_rebuilds_to_the_same_hash(built, tmp_path):
    out, _ = built
    manifest = require(out, "instructions")
    assert check_artifact(out, manifest, verify=True) is None
    assert sorted(manifest["files"]) == ["report.json", "train.jsonl", "val.jsonl"]
    assert manifest["inputs"][0]["kind"] == "dataset" and manifest["recipe"]["max_chars"] == 700
    dataset = write_dataset(tmp_path / "dataset", PLANTED + MANY)
    build_docstring_pairs(dataset, tmp_path / "one")
    build_docstring_pairs(dataset, tmp_path / "one")  # over its own earlier build
    build_docstring_pairs(dataset, tmp_path / "two")
    assert content_hash(tmp_path / "one") == content_hash(tmp_path / "two") == manifest["content_hash"]
    assert read_manifest(tmp_path / "one")["content_hash"] == manifest["content_hash"]


def test_user_errors(tmp_path):
    dataset = write_dataset(tmp_path / "dataset", [("m.py", generated(1))])
    with pytest.raises(UserError, match="no such artifact"):
        build_docstring_pairs(tmp_path / "missing", tmp_path / "out")
    tokens = write_tokens(tmp_path / "tokens", 0.1)
    with pytest.raises(UserError, match="expected a dataset artifact, found a tokens artifact"):
        build_docstring_pairs(tokens, tmp_path / "out")
    no_pairs = write_dataset(
        tmp_path / "plain", [("m.py", "x = 1\n"), ("s.py", generated(1).replace("return x * 1", "..."))]
    )
    with pytest.raises(UserError, match="no function with a docstring fit max_chars 700 / max_body_lines 12"):
        build_docstring_pairs(no_pairs, tmp_path / "out")
    old_index = write_tokens(tmp_path / "old-tokens", 0.1, split={"by": "record"})
    with pytest.raises(UserError, match="'split' does not record the origin-document rule"):
        build_docstring_pairs(dataset, tmp_path / "out", tokens=old_index)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="is not an instructions artifact"):
        build_docstring_pairs(dataset, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="afile is a file, not a directory"):
        build_docstring_pairs(dataset, tmp_path / "afile" / "out")
    with pytest.raises(UserError, match="--max-body-lines 0"):
        build_docstring_pairs(dataset, tmp_path / "out", max_body_lines=0)
    assert not (tmp_path / "out").exists()
