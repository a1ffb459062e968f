"""Sources: the recipe's source name wins, compressed files in every file source, the `html` source, a global
`limit`, `max_bytes` honoured by file sources, and keys that do not apply to a source type refused."""

from __future__ import annotations

import bz2
import gzip
import json

import pytest
import zstandard
from tests_data_helpers import build

from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError
from llmforge.data.config import DataConfig


def test_record_source_field_does_not_override_the_recipe_source_name(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "first document", "source": "common-crawl"})
        + "\n"
        + json.dumps({"text": "second"})
        + "\n"
    )
    report, docs = build(
        tmp_path, {"sources": [{"name": "web", "type": "jsonl", "path": str(tmp_path / "a.jsonl")}]}
    )
    assert report["sources"]["web"]["docs_out"] == 2
    rows = list(iter_documents(tmp_path / "run" / "dataset"))
    assert {r["source"] for r in rows} == {"web"}
    original = [r.get("metadata", {}).get("original_source") for r in rows]
    assert set(original) == {"common-crawl", None}


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".zst", zstandard.ZstdCompressor().compress), (".bz2", bz2.compress)],
)
def test_text_and_jsonl_sources_read_compressed_files(tmp_path, suffix, compress):
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / f"a.txt{suffix}").write_bytes(compress(b"a compressed text file"))
    (tmp_path / "txt" / "b.txt").write_text("a plain one")
    (tmp_path / f"rows.jsonl{suffix}").write_bytes(compress(b'{"text": "a compressed record"}\n'))
    sources = [
        {"name": "txt", "type": "text", "path": str(tmp_path / "txt")},
        {"name": "rows", "type": "jsonl", "path": str(tmp_path / f"rows.jsonl{suffix}")},
    ]
    _, docs = build(tmp_path, {"sources": sources})
    assert sorted(docs.values()) == ["a compressed record", "a compressed text file", "a plain one"]


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("a.txt.zst", zstandard.ZstdCompressor().compress),
        ("a.txt.gz", gzip.compress),
        ("a.txt.bz2", bz2.compress),
    ],
)
def test_corrupt_compressed_text_file_is_a_user_error(tmp_path, name, compress):
    packed = compress(" ".join(str(i) for i in range(3000)).encode())
    (tmp_path / name).write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UserError, match=rf"source t: {name}: unreadable or corrupt file"):
        build(tmp_path, {"sources": [{"name": "t", "type": "text", "path": str(tmp_path)}]})


def test_html_source_turns_pages_into_text_without_a_step(tmp_path, shared_data):
    pages = sorted((shared_data / "article_extraction" / "html").glob("*.html.gz"))[:2]
    truth = json.loads((shared_data / "article_extraction" / "ground-truth.json").read_text())
    (tmp_path / "pages").mkdir()
    for p in pages:
        (tmp_path / "pages" / p.name).write_bytes(p.read_bytes())
    report, docs = build(
        tmp_path, {"sources": [{"name": "news", "type": "html", "path": str(tmp_path / "pages")}]}
    )
    assert report["steps"][0]["step"] == "00.html_to_text"  # added, scoped to the html source
    for p in pages:
        body = truth[p.name.split(".")[0]]["articleBody"]
        assert body.strip().split("\n")[0][:60] in docs[p.name]
        assert "<script" not in docs[p.name]


def test_limit_is_global_so_the_dataset_does_not_depend_on_workers(tmp_path, monkeypatch):
    import llmforge.data.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MIN_BYTES_PER_WORKER", 1, raising=False)  # 2 workers really run
    (tmp_path / "src").mkdir()
    for f in range(3):
        rows = [{"text": f"file {f} document {i}"} for i in range(10)]
        (tmp_path / "src" / f"{f}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = {"sources": [{"name": "s", "type": "jsonl", "path": str(tmp_path / "src"), "limit": 12}]}
    one_report, one = build(tmp_path, {**table, "workers": 1}, run="one")
    two_report, two = build(tmp_path, {**table, "workers": 2}, run="two")
    assert two_report["tasks"] == 2 and two_report["workers"] == 2
    assert one == two and len(one) == 12
    assert sorted(one.values())[:3] == ["file 0 document 0", "file 0 document 1", "file 0 document 2"]
    assert sum(t.startswith("file 1") for t in one.values()) == 2  # the first 12 in file order


def test_max_bytes_and_max_files_cap_every_file_source(tmp_path):
    (tmp_path / "txt").mkdir()
    for i in range(5):
        (tmp_path / "txt" / f"{i}.txt").write_text(f"file {i} " + "x" * 95)  # 103 bytes each
    source = {"name": "t", "type": "text", "path": str(tmp_path / "txt")}
    _, docs = build(tmp_path, {"sources": [{**source, "max_bytes": 250}]}, run="bytes")
    assert sorted(docs) == ["0.txt", "1.txt"]
    _, docs = build(tmp_path, {"sources": [{**source, "max_files": 3}]}, run="files")
    assert sorted(docs) == ["0.txt", "1.txt", "2.txt"]


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        (
            {"type": "jsonl", "path": "x", "split": "test"},
            "data.sources[0] (s).split: does not apply to a 'jsonl' source (only to hf)",
        ),
        (
            {"type": "text", "path": "x", "text_key": "body"},
            "text_key: does not apply to a 'text' source (only to jsonl, parquet, hf)",
        ),
        ({"type": "hf", "path": "x", "max_bytes": 10}, "max_bytes: does not apply to a 'hf' source"),
        ({"type": "python-stdlib", "glob": "*.py"}, "glob: does not apply to a 'python-stdlib' source"),
        ({"type": "jsonl"}, "a jsonl source needs a path"),
    ],
)
def test_source_key_that_does_not_apply_to_its_type_is_refused(source, phrase):
    with pytest.raises(
        ValueError,
        match=phrase.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]"),
    ):
        DataConfig.model_validate({"sources": [{"name": "s", **source}]})
