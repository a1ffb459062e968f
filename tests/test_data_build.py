"""`llmforge data build` end to end: dedup, mixture weights, resume after a crash, bad input, stats/sample."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from llmforge.artifacts import read_manifest
from llmforge.artifacts.dataset import iter_documents
from llmforge.data.build import build_dataset, work_dir
from llmforge.data.config import DataConfig

# letters only: MinHash normalisation maps digits to 0, so "w17" and "w42" would be the same word
VOCAB = sorted({"".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=6)) for i in range(3000)})


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def build(tmp_path: Path, table: dict, seed: int = 0) -> tuple[dict, Path]:
    cfg = DataConfig.model_validate(table)
    run_dir = tmp_path / "run"
    return build_dataset(cfg, run_dir, seed), run_dir / "dataset"


def test_planted_exact_and_near_duplicates_are_removed(tmp_path, cli):
    rng = random.Random(0)
    distinct = [" ".join(words(rng, 200)) for _ in range(30)]
    near = []
    for text in distinct[:6]:
        w = text.split()
        for k in rng.sample(range(len(w)), 2):  # 1% of the words changed
            w[k] = "changed"
        near.append(" ".join(w))
    records = [{"text": t, "id": f"d{i}"} for i, t in enumerate(distinct)]
    records += [{"text": t, "id": f"x{i}"} for i, t in enumerate(distinct[10:16])]  # exact copies
    records += [{"text": t, "id": f"n{i}"} for i, t in enumerate(near)]
    rng.shuffle(records)
    write_jsonl(tmp_path / "src" / "a.jsonl.gz", records)
    report, out = build(
        tmp_path,
        {
            "sources": [{"name": "web", "type": "jsonl", "path": str(tmp_path / "src")}],
            "steps": [{"type": "exact_dedup"}, {"type": "minhash", "bands": 14, "rows": 8}],
            "tasks": 2,
        },
    )
    kept = sorted(d["text"] for d in iter_documents(out))
    assert len(kept) == 30 and set(kept) <= set(distinct) | set(near)
    assert {t.split()[0] for t in kept} == {t.split()[0] for t in distinct}  # one survivor per cluster
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["00.exact_dedup"]["docs_in"] == 42 and steps["00.exact_dedup"]["docs_out"] == 36
    assert steps["01.minhash"]["docs_out"] == 30
    # a dedup step's time spans its stages (signature, buckets, cluster, filter), so it is well above zero
    assert steps["01.minhash"]["seconds"] > 0.01 and steps["01.minhash"]["docs_per_s"] > 0
    # a few removed documents per step and reason, shown by `data stats`
    exact_examples = steps["00.exact_dedup"]["examples"]["exact_dedup"]
    assert len(exact_examples) == 3 and all(e["id"].startswith(("d", "x")) for e in exact_examples)
    assert all(
        len(e["text"]) == 300 and any(d.startswith(e["text"]) for d in distinct[10:16])
        for e in exact_examples
    )
    assert len(steps["01.minhash"]["examples"]["minhash"]) == 3
    shown = cli("data", "stats", str(out))
    assert shown.returncode == 0 and "removed documents" in shown.stdout, shown.stderr
    assert exact_examples[0]["id"] in shown.stdout
    assert report["minhash_jaccard_threshold"]["01.minhash"] == pytest.approx((1 / 14) ** (1 / 8), abs=1e-3)
    assert read_manifest(out)["kind"] == "dataset"
    assert (out / "funnel.png").stat().st_size > 1000
    assert not work_dir(tmp_path / "run").exists()


def test_mixture_weights_give_expected_proportions(tmp_path):
    rng = random.Random(1)
    sources = []
    for name, weight, max_epochs in (("a", 2.0, 4.0), ("b", 0.5, 4.0), ("c", 3.0, 2.0)):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": " ".join(words(rng, 20))} for _ in range(400)])
        sources.append(
            {
                "name": name,
                "type": "jsonl",
                "path": str(tmp_path / f"{name}.jsonl"),
                "weight": weight,
                "max_epochs": max_epochs,
            }
        )
    report, out = build(tmp_path, {"sources": sources}, seed=7)
    counts: dict[str, int] = {}
    for d in iter_documents(out):
        counts[d["source"]] = counts.get(d["source"], 0) + 1
    assert counts["a"] == 800
    assert counts["c"] == 800  # 3 epochs asked, capped at 2
    assert abs(counts["b"] - 200) < 40  # seeded Bernoulli(0.5) over 400 documents
    assert report["sources"]["b"]["docs_out"] == counts["b"]
    first = read_manifest(out)["content_hash"]
    again, _ = build(tmp_path, {"sources": sources}, seed=7)
    assert again["sources"]["b"]["docs_out"] == counts["b"]  # seeded: the same subsample every run
    # Same documents, same bytes (gzip without a time stamp; timings apart): the same content hash.
    assert read_manifest(out)["content_hash"] == first
    assert "seconds" not in json.loads((out / "report.json").read_text())
    assert json.loads((out / "timings.json").read_text())["seconds"] > 0


def test_bad_record_fails_or_is_skipped(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"text": "good one"}, {"body": "no text field"}, {"text": "good two"}])
    table = {"sources": [{"name": "s", "type": "jsonl", "path": str(tmp_path / "s.jsonl")}]}
    from llmforge.console import UserError

    with pytest.raises(UserError, match=r"source s: .*s.jsonl:2: record without a string 'text' field"):
        build(tmp_path, table)
    assert not (tmp_path / "run" / "dataset").exists()
    report, out = build(tmp_path, {**table, "on_bad_record": "skip"})
    assert report["bad_records_skipped"] == 1
    assert sorted(d["text"] for d in iter_documents(out)) == ["good one", "good two"]


def test_interrupted_build_resumes_finished_tasks(tmp_path, cli):
    src = tmp_path / "src"
    write_jsonl(src / "0.jsonl", [{"text": f"first file document {i}"} for i in range(50)])
    write_jsonl(src / "1.jsonl", [{"text": "fine"}, {"oops": "crash here"}])
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""[run]\nname = "resume"\nout_dir = "{tmp_path / "runs"}"\n
[data]\ntasks = 2\n
[[data.sources]]\nname = "s"\ntype = "jsonl"\npath = "{src}"\n""")
    first = cli("data", "build", str(recipe))
    assert first.returncode == 2, first.stderr
    assert "source s" in first.stderr and "1.jsonl:2" in first.stderr
    run_dir = tmp_path / "runs" / "resume"
    finished = work_dir(run_dir) / "output" / "00000.jsonl.gz"
    assert finished.is_file() and not (run_dir / "dataset").exists()
    inode = finished.stat().st_ino

    write_jsonl(src / "1.jsonl", [{"text": "fine"}, {"text": "fixed"}])
    second = cli("data", "build", str(recipe), "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["resumed"] is True and report["docs_out"] == 52
    assert (run_dir / "dataset" / "data" / "00000.jsonl.gz").stat().st_ino == inode  # task 0 was not re-run
    # how it ran is kept out of the content hash: a fresh build of the same sources hashes the same
    assert json.loads((run_dir / "dataset" / "timings.json").read_text())["resumed"] is True
    resumed_hash = read_manifest(run_dir / "dataset")["content_hash"]
    fresh = cli("data", "build", str(recipe), "--set", "data.workers=2", "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["resumed"] is False
    assert read_manifest(run_dir / "dataset")["content_hash"] == resumed_hash


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ('type = "dedupe"', "unknown step type 'dedupe'; valid: html_to_text"),
        (
            'type = "minhash"\nbandz = 3',
            "data.steps[0] (minhash): unknown option 'bandz'; valid options: shingle_size",
        ),
    ],
)
def test_unknown_step_or_option_exits_2(tmp_path, cli, step, message):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""[run]\nout_dir = "{tmp_path}"\n[[data.sources]]\nname = "std"\ntype = "python-stdlib"
[[data.steps]]\n{step}\n""")
    result = cli("data", "build", str(recipe))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_source_and_corrupt_file_exit_2(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""[run]\nout_dir = "{tmp_path}"\n[[data.sources]]\nname = "web"\ntype = "jsonl"
path = "{tmp_path / "missing"}"\n""")
    result = cli("data", "build", str(recipe))
    assert (
        result.returncode == 2 and "source web: path" in result.stderr and "does not exist" in result.stderr
    )

    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])
    recipe.write_text(recipe.read_text().replace(str(tmp_path / "missing"), str(tmp_path / "bad.jsonl.gz")))
    result = cli("data", "build", str(recipe))
    assert result.returncode == 2 and "corrupt" in result.stderr, result.stderr
    assert not (tmp_path / "run" / "dataset").exists()


def test_stdlib_build_then_stats_and_sample(tmp_path, cli):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""[run]\nname = "std"\nout_dir = "{tmp_path}"\n
[data]\nworkers = 1\n
[[data.sources]]\nname = "stdlib"\ntype = "python-stdlib"\nmax_bytes = 400000\n
[[data.steps]]\ntype = "whitespace"\n[[data.steps]]\ntype = "code_quality"\n[[data.steps]]\ntype = "exact_dedup"\n""")
    built = cli("data", "build", str(recipe), "--json")
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["docs_out"] > 10 and report["sources"]["stdlib"]["docs_in"] >= report["docs_out"]
    dataset = tmp_path / "std" / "dataset"
    texts = [d["text"] for d in iter_documents(dataset)]
    assert all("site-packages" not in d["id"] for d in iter_documents(dataset))
    assert any("def " in t for t in texts)

    stats = cli("data", "stats", str(dataset), "--json")
    assert stats.returncode == 0, stats.stderr
    s = json.loads(stats.stdout)
    assert s["docs"] == len(texts) and s["by_source"]["stdlib"]["docs"] == len(texts)
    assert "01.code_quality" in s["steps"]

    sample = cli("data", "sample", str(dataset), "-n", "3", "--json")
    assert sample.returncode == 0, sample.stderr
    docs = json.loads(sample.stdout)
    assert len(docs) == 3 and all(d["text"] in texts for d in docs)


def test_data_sample_and_result_tables_go_to_stdout(tmp_path, cli):
    """`llmforge data sample … | head` showed nothing: the samples and tables were printed on stderr."""
    write_jsonl(
        tmp_path / "s.jsonl", [{"text": f"sample document number {i}", "id": f"d{i}"} for i in range(5)]
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""[run]\nname = "o"\nout_dir = "{tmp_path}"\n
[[data.sources]]\nname = "s"\ntype = "jsonl"\npath = "{tmp_path / "s.jsonl"}"\n""")
    built = cli("data", "build", str(recipe), "--quiet")
    assert built.returncode == 0 and "docs out" in built.stdout and "docs out" not in built.stderr
    dataset = str(tmp_path / "o" / "dataset")
    sample = cli("data", "sample", dataset, "-n", "2", "--quiet")
    assert sample.returncode == 0 and sample.stdout.count("sample document number") == 2, sample.stderr
    assert "sample document" not in sample.stderr
    stats = cli("data", "stats", dataset)
    assert "chars p10" in stats.stdout and "chars p10" not in stats.stderr


def test_parquet_text_folder_and_warc_sources(tmp_path, shared_data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["parquet row one", "parquet row two"]}), tmp_path / "p.parquet")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("a plain text file")
    (tmp_path / "txt" / "b.txt").write_text("another plain text file")
    report, out = build(
        tmp_path,
        {
            "sources": [
                {"name": "pq", "type": "parquet", "path": str(tmp_path / "p.parquet"), "text_key": "content"},
                {"name": "txt", "type": "text", "path": str(tmp_path / "txt")},
                {"name": "warc", "type": "warc", "path": str(shared_data / "warc" / "example.warc.gz")},
            ],
            "steps": [{"type": "html_to_text", "timeout": 10, "sources": ["warc"]}],
        },
    )
    by_source: dict[str, list[str]] = {}
    for d in iter_documents(out):
        by_source.setdefault(d["source"], []).append(d["text"])
    assert sorted(by_source["pq"]) == ["parquet row one", "parquet row two"]
    assert sorted(by_source["txt"]) == ["a plain text file", "another plain text file"]
    assert any("Example Domain" in t or "illustrative examples" in t for t in by_source["warc"])
    assert all("<html" not in t for t in by_source["warc"])


def test_line_dedup_removes_repeated_line_spans(tmp_path):
    rng = random.Random(1)
    header = [
        "copyright notice of the example site",
        "all rights reserved by nobody",
        "cookie policy applies",
    ]
    bodies = [[" ".join(words(rng, 12)) for _ in range(8)] for _ in range(5)]
    records = [{"text": "\n".join(header + body), "id": f"d{i}"} for i, body in enumerate(bodies)]
    records.append({"text": "\n".join(header + ["just a few words"]), "id": "short"})
    write_jsonl(tmp_path / "src" / "a.jsonl", records)
    report, out = build(
        tmp_path,
        {
            "sources": [{"name": "web", "type": "jsonl", "path": str(tmp_path / "src")}],
            "steps": [{"type": "line_dedup", "span": 3, "min_sentences": 0}],
        },
    )
    docs = {d["id"]: d["text"] for d in iter_documents(out)}
    assert sorted(docs) == ["d0", "d1", "d2", "d3", "d4"]  # "short" had only the repeated span left
    assert sum(header[0] in t for t in docs.values()) == 1
    assert all(docs[f"d{i}"].split("\n")[-8:] == body for i, body in enumerate(bodies))
    step = report["steps"][0]
    assert step["dropped"] == {"line_dedup": 1} and step["bytes_out"] < step["bytes_in"]


def test_resumed_task_rewrites_its_removed_ids_instead_of_appending_them_again(tmp_path):
    from datatrove.data import Document

    from llmforge.data.steps.examples import RemovedExamples, read_removed_documents, read_removed_ids

    def run_task(rank: int, ids: list[str]) -> None:  # each run of a task has its own writer (a new process)
        examples = RemovedExamples(tmp_path, "html", every_id=True, full_documents=5)
        for i in ids:
            examples.write(Document(text=f"page {i}", id=i, metadata={"source": "web"}), rank=rank)

    run_task(0, ["a", "b"])
    run_task(1, ["c"])
    run_task(0, ["a", "b", "a"])  # task 0 re-run after a crash; two pages of its input share the id "a"
    assert (tmp_path / "ids-00000.jsonl").read_text().count('"id": "a"') == 2
    assert [r["id"] for r in read_removed_ids(tmp_path)] == ["a", "b", "a", "c"]
    assert [r["id"] for r in read_removed_documents(tmp_path, 10)] == ["a", "b", "a", "c"]
