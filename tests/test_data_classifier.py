"""Quality classifier: training separates reference prose from junk; the step keeps by threshold or Pareto."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from datatrove.data import Document

from llmforge.artifacts import read_manifest
from llmforge.artifacts.checks import check_artifact
from llmforge.artifacts.dataset import iter_documents
from llmforge.console import UserError
from llmforge.data.build import build_dataset
from llmforge.data.classifier import QualityModel, train_classifier
from llmforge.data.config import DataConfig
from llmforge.data.steps.classifier import QualityClassifierFilter, pareto_keep

SPAM = (
    "click here login home buy cheap free shipping best price sale now subscribe cookies accept menu contact "
    "404 page not found share tweet like follow"
).split()


def junk_texts(n: int, seed: int) -> list[str]:
    """Raw-web-like junk: navigation/spam word runs, random character strings, menu lines."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(" | ".join(rng.choice(SPAM) for _ in range(rng.randint(10, 40))))
        elif i % 3 == 1:
            chars = "abcdefghijklmnopqrstuvwxyz0123456789"
            out.append(" ".join("".join(rng.choices(chars, k=rng.randint(2, 9))) for _ in range(40)))
        else:
            out.append("\n".join(f"{rng.choice(SPAM).upper()} >> {rng.randint(1, 999)}" for _ in range(12)))
    return out


def wiki_paragraphs(shared_data: Path) -> list[str]:
    text = (shared_data / "wikitext2" / "valid.txt").read_text()
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 40]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, shared_data) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("clf")
    (tmp / "junk.txt").write_text("\n\n".join(junk_texts(600, seed=0)))
    out = tmp / "clf"
    report = train_classifier(shared_data / "wikitext2" / "valid.txt", tmp / "junk.txt", out, seed=0)
    return out, report


def test_classifier_separates_held_out_prose_from_junk(classifier, shared_data):
    out, report = classifier
    held = report["heldout"]
    assert held["positives"] > 50 and held["negatives"] > 50
    assert held["accuracy"] >= 0.9 and held["precision"] >= 0.9 and held["recall"] >= 0.9
    assert read_manifest(out)["kind"] == "classifier"
    assert json.loads((out / "report.json").read_text())["heldout"] == held
    assert (out / "scores.png").stat().st_size > 1000
    assert check_artifact(out, read_manifest(out)) is None
    # fresh junk (another seed) scores low, real prose high
    model = QualityModel.load(out)
    prose = wiki_paragraphs(shared_data)[:40]
    assert sum(model.score(t) >= 0.5 for t in prose) >= 36
    assert sum(model.score(t) < 0.5 for t in junk_texts(40, seed=1)) >= 36


def test_classifier_without_its_model_fails_the_contract_check(classifier, tmp_path):
    out, _ = classifier
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((out / "manifest.json").read_text())
    (broken / "model.bin").write_bytes(b"")
    assert "model.bin" in check_artifact(broken, read_manifest(broken))
    (broken / "model.bin").unlink()
    with pytest.raises(UserError, match="model.bin"):
        QualityModel.load(broken)


def test_step_keeps_high_scoring_documents_by_threshold(classifier, shared_data):
    out, _ = classifier
    step = QualityClassifierFilter(str(out), threshold=0.5)
    prose = wiki_paragraphs(shared_data)[:20]
    docs = [Document(text=t, id=f"p{i}") for i, t in enumerate(prose)]
    docs += [Document(text=t, id=f"j{i}") for i, t in enumerate(junk_texts(20, seed=2))]
    kept = list(step.run(iter(docs)))
    kept_ids = {d.id for d in kept}
    assert sum(i.startswith("p") for i in kept_ids) >= 18 and sum(i.startswith("j") for i in kept_ids) <= 2
    assert all(d.metadata["quality_score"] >= 0.5 for d in kept)
    assert step.stats["dropped_low_quality_score"].total == len(docs) - len(kept)


def test_pareto_sampling_keeps_with_gpt3_probability():
    # numpy's pareto is the Lomax distribution: P(X > 1 - s) = (2 - s)^-alpha
    for score in (0.0, 0.5, 0.9, 1.0):
        kept = sum(pareto_keep(score, 9.0, f"0:{i}") for i in range(4000)) / 4000
        assert kept == pytest.approx((2 - score) ** -9, abs=0.03)
    assert [pareto_keep(0.8, 9.0, f"7:{i}") for i in range(50)] == [
        pareto_keep(0.8, 9.0, f"7:{i}") for i in range(50)
    ]


def test_quality_classifier_step_in_a_build(classifier, shared_data, tmp_path):
    out, _ = classifier
    src = tmp_path / "src.jsonl"
    records = [{"text": t, "id": f"p{i}"} for i, t in enumerate(wiki_paragraphs(shared_data)[:15])]
    records += [{"text": t, "id": f"j{i}"} for i, t in enumerate(junk_texts(15, seed=3))]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    table = {
        "sources": [{"name": "web", "type": "jsonl", "path": str(src)}],
        "steps": [{"type": "quality_classifier", "model": str(out), "mode": "pareto"}],
    }
    report = build_dataset(DataConfig.model_validate(table), tmp_path / "run", seed=0)
    kept = {d["id"] for d in iter_documents(tmp_path / "run" / "dataset")}
    assert sum(i.startswith("p") for i in kept) >= 13 and sum(i.startswith("j") for i in kept) <= 3
    assert report["steps"][0]["dropped"].get("pareto_rejected", 0) == 30 - len(kept)

    table["steps"][0]["model"] = str(tmp_path / "nope")
    with pytest.raises(UserError, match="nope"):
        build_dataset(DataConfig.model_validate(table), tmp_path / "run2", seed=0)


def test_train_classifier_cli_and_bad_input(tmp_path, cli, shared_data):
    (tmp_path / "junk.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in junk_texts(60, 4)))
    ref = shared_data / "wikitext2" / "valid.txt"
    args = ["data", "train-classifier", "--positive", str(ref), "--negative", str(tmp_path / "junk.jsonl")]
    result = cli(*args, "--out", str(tmp_path / "c"), "--text-key", "body", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["heldout"]["negatives"] == 6
    bad_key = cli(*args, "--out", str(tmp_path / "c2"))
    assert bad_key.returncode == 2 and "'text'" in bad_key.stderr, bad_key.stderr
    missing = cli(
        "data",
        "train-classifier",
        "--positive",
        str(tmp_path / "none.txt"),
        "--negative",
        str(ref),
        "--out",
        str(tmp_path / "c3"),
    )
    assert missing.returncode == 2 and "none.txt" in missing.stderr, missing.stderr
    assert not (tmp_path / "c2").exists() and not (tmp_path / "c3").exists()


def test_training_inputs_dataset_artifact_folder_and_text_file(tmp_path):
    from llmforge.data.classifier import read_texts

    src = tmp_path / "src" / "a.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps({"text": f"record {i} of the source"}) + "\n" for i in range(4)))
    table = {"sources": [{"name": "s", "type": "jsonl", "path": str(src)}]}
    build_dataset(DataConfig.model_validate(table), tmp_path / "run", seed=0)
    assert sorted(read_texts(tmp_path / "run" / "dataset")) == [f"record {i} of the source" for i in range(4)]

    (tmp_path / "src" / "notes.txt").write_text("first paragraph\nstill first\n\n\nsecond one\n")
    (tmp_path / "src" / "image.png").write_bytes(b"\x89PNG")
    assert len(list(read_texts(tmp_path / "src"))) == 6  # 4 records + 2 paragraphs; the .png is not read
    assert list(read_texts(tmp_path / "src" / "notes.txt")) == [
        "first paragraph\nstill first",
        "second one\n",
    ]


def test_divergence_is_retried_at_half_the_learning_rate(tmp_path, monkeypatch):
    import fasttext

    real, rates = fasttext.train_supervised, []

    def flaky(*args, **kwargs):
        rates.append(kwargs["lr"])
        if len(rates) == 1:
            raise RuntimeError("Encountered NaN.")
        return real(*args, **kwargs)

    monkeypatch.setattr(fasttext, "train_supervised", flaky)
    (tmp_path / "good.txt").write_text(
        "\n\n".join(" ".join(["good prose words here"] * 12) for _ in range(20))
    )
    (tmp_path / "bad.txt").write_text("\n\n".join(junk_texts(20, seed=2)))
    report = train_classifier(tmp_path / "good.txt", tmp_path / "bad.txt", tmp_path / "clf", epochs=2)
    assert rates == [0.5, 0.25] and report["options"]["lr"] == 0.25
    assert json.loads((tmp_path / "clf" / "timings.json").read_text())["seconds"] == report["seconds"]

    monkeypatch.setattr(
        fasttext, "train_supervised", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("NaN"))
    )
    with pytest.raises(RuntimeError, match="NaN"):  # gives up after lr 0.0625
        train_classifier(tmp_path / "good.txt", tmp_path / "bad.txt", tmp_path / "clf2", epochs=2)
    assert not (tmp_path / "clf2").exists()
