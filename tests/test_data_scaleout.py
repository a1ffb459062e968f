"""`--workers 2` gives the same dataset as one worker; the `hf` source reads local datasets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError
from llmforge.data.build import build_dataset
from llmforge.data.config import DataConfig


def build(table: dict, run_dir: Path) -> tuple[dict, dict[str, str]]:
    report = build_dataset(DataConfig.model_validate(table), run_dir, seed=0)
    return report, {d["id"]: d["text"] for d in iter_documents(run_dir / "dataset")}


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


def test_two_workers_build_the_same_dataset_as_one(tmp_path):
    """Same ids and texts: sharding, per-source steps, dedup (the kept copy is chosen by id) and the mixture
    coin (seeded by id) do not depend on the task count."""
    src = planted_corpus(tmp_path / "src")
    table = {
        "sources": [
            {"name": "web", "type": "jsonl", "path": str(src), "weight": 0.7},
            {"name": "stdlib", "type": "python-stdlib", "max_bytes": 150_000},
        ],
        "steps": [
            {"type": "whitespace"},
            {"type": "code_quality", "sources": ["stdlib"]},
            {"type": "exact_dedup"},
            {"type": "minhash"},
        ],
    }
    one_report, one = build(table | {"workers": 1}, tmp_path / "one")
    two_report, two = build(table | {"workers": 2}, tmp_path / "two")
    assert two_report["tasks"] == 2 and one_report["tasks"] == 1
    assert one == two
    exact = one_report["steps"][2]
    assert exact["docs_in"] - exact["docs_out"] == 5  # the planted exact copies
    assert one_report["steps"][3]["docs_in"] - one_report["steps"][3]["docs_out"] >= 5  # + the near copies
    assert 0 < one_report["sources"]["web"]["docs_out"] < 45  # weight 0.7 subsampled the 45 unique docs


def test_hf_source_from_save_to_disk_and_local_json(tmp_path):
    import datasets

    texts = [f"document number {i} of the local dataset" for i in range(7)]
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "rows.jsonl").write_text(
        "".join(json.dumps({"text": t.upper()}) + "\n" for t in texts)
    )
    sources = [
        {"name": "saved", "type": "hf", "path": str(tmp_path / "saved"), "text_key": "body"},
        {"name": "js", "type": "hf", "path": str(tmp_path / "js")},  # load_dataset infers the json builder
    ]
    report, docs = build({"sources": sources, "workers": 2}, tmp_path / "run")
    assert sorted(t for t in docs.values() if not t.isupper()) == sorted(texts)
    assert sorted(t for t in docs.values() if t.isupper()) == sorted(t.upper() for t in texts)
    assert report["sources"]["saved"]["docs_out"] == 7 and report["sources"]["js"]["docs_out"] == 7
    # row ids are global row numbers, whatever the number of tasks
    assert sorted(i.rsplit("/", 1)[1] for i in docs if "saved" in i) == [str(i) for i in range(7)]

    with pytest.raises(UserError, match="source saved"):
        build({"sources": [{**sources[0], "split": "test", "path": str(tmp_path / "nope")}]}, tmp_path / "r2")
