"""`llmforge data train-classifier --labelled`: a classifier from labelled rows (Davidson et al. 2017's tweets)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmforge.artifacts import read_manifest
from llmforge.artifacts.checks import check_artifact
from llmforge.artifacts.classifier import ClassifierModel
from llmforge.console import UserError
from llmforge.data.classifier import read_labelled, roc_auc, train_classifier_labelled

DAVIDSON = ("hate_offensive_davidson", "labeled_data.csv")


def davidson(shared_data: Path) -> Path:
    return shared_data.joinpath(*DAVIDSON)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("lab") / "clf"
    report = train_classifier_labelled(
        davidson(shared_data), out, positive_labels="0,1", text_key="tweet", label_key="class", holdout=0.3
    )
    return out, report


def test_davidson_classifier_beats_chance_and_the_majority_answer(trained):
    out, report = trained
    h = report["heldout"]
    # 300 rows: 13 hate, 242 offensive, 45 neither; each class held out 30%, so the file's balance is kept
    assert report["labelled"]["label_counts"] == {"0": 13, "1": 242, "2": 45}
    assert (h["positives"], h["negatives"]) == (round(255 * 0.3), round(45 * 0.3))
    assert report["positive"]["train_docs"] + h["positives"] == 255
    # the minority class was repeated in training, never in the held-out rows
    assert report["negative"]["balanced_train_docs"] == report["positive"]["train_docs"]
    assert h["majority_class"] == "positive" and h["majority_accuracy"] == pytest.approx(76 / 90, abs=1e-4)
    # better than chance at ranking (AUC 0.5) and than always answering "toxic" on the balanced metrics
    assert h["roc_auc"] >= 0.75
    assert h["balanced_accuracy"] >= 0.65
    assert h["macro_f1"] >= h["majority_macro_f1"] + 0.15
    assert h["f1"] >= 0.85
    # plain accuracy also beats the majority's here (0.88 vs 0.84), but on 90 held-out rows that margin is
    # two or three rows: about half the seeds give it, so it is pinned to this seed, not a general claim
    assert h["accuracy"] > h["majority_accuracy"]
    manifest = read_manifest(out)
    assert manifest["kind"] == "classifier" and check_artifact(out, manifest) is None
    assert manifest["recipe"]["positive_labels"] == ["0", "1"] and manifest["recipe"]["minn"] == 2
    assert json.loads((out / "report.json").read_text())["heldout"] == h


def test_held_out_metrics_are_those_of_the_saved_model(trained, shared_data):
    """Re-score the rows the report says were held out: the report's AUC is the saved model's."""
    out, report = trained
    model = ClassifierModel.load(out)
    rows = read_labelled(davidson(shared_data), "tweet", "class")
    pos = [model.score(t) for t, label in rows if label in ("0", "1")]
    neg = [model.score(t) for t, label in rows if label == "2"]
    # on all rows (train + held out) the model ranks toxic above neither at least as well as on held-out ones
    assert roc_auc(pos, neg) >= report["heldout"]["roc_auc"] - 0.05
    assert sum(pos) / len(pos) > sum(neg) / len(neg) + 0.2


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.5], [0.5]) == 0.5


def test_jsonl_rows_with_integer_and_boolean_labels(tmp_path):
    rows = [{"text": f"you are a horrible stupid idiot number {i}", "toxic": True} for i in range(12)]
    rows += [{"text": f"what a lovely sunny garden party {i}", "toxic": False} for i in range(12)]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = train_classifier_labelled(
        f, tmp_path / "c", positive_labels=["true"], label_key="toxic", holdout=0.25
    )
    assert report["labelled"]["label_counts"] == {"false": 12, "true": 12}
    assert report["heldout"]["accuracy"] == 1.0
    model = ClassifierModel.load(tmp_path / "c")
    assert model.score("a horrible stupid idiot") > 0.5 > model.score("a lovely sunny garden")


def test_bad_labelled_inputs_name_the_file_and_key(tmp_path):
    f = tmp_path / "d.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tweet", "class"])
        w.writerows([[f"some text {i}", str(i % 2)] for i in range(10)])
    with pytest.raises(UserError, match=r"d\.csv: no column 'label'.*'tweet', 'class'"):
        read_labelled(f, "tweet", "label")
    with pytest.raises(UserError, match=r"--positive-labels '7' never occurs in 'class' \(labels: 0, 1\)"):
        train_classifier_labelled(f, tmp_path / "o", positive_labels="7", text_key="tweet", label_key="class")
    with pytest.raises(UserError, match="every label"):
        train_classifier_labelled(
            f, tmp_path / "o", positive_labels="0,1", text_key="tweet", label_key="class"
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "no label"}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: no field 'label'"):
        read_labelled(bad)
    with pytest.raises(UserError, match=r"\.csv or \.jsonl"):
        read_labelled(_touch(tmp_path / "rows.parquet"))
    assert not (tmp_path / "o").exists()


def _touch(path: Path) -> Path:
    path.write_bytes(b"PAR1")
    return path


def test_cli_labelled_and_its_usage_errors(tmp_path, cli, shared_data):
    data = str(davidson(shared_data))
    common = ["data", "train-classifier", "--labelled", data, "--text-key", "tweet", "--label-key", "class"]
    ok = cli(*common, "--positive-labels", "0,1", "--out", str(tmp_path / "c"), "--holdout", "0.2", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["labelled"]["positive_labels"] == ["0", "1"] and "macro_f1" in report["heldout"]
    table = cli(*common, "--positive-labels", "0,1", "--out", str(tmp_path / "t"))
    assert table.returncode == 0 and "majority baseline (positive)" in table.stdout, table.stderr
    both = cli(*common, "--positive-labels", "0", "--positive", data, "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "not both" in both.stderr
    no_labels = cli(*common, "--out", str(tmp_path / "x"))
    assert no_labels.returncode == 2 and "--positive-labels" in no_labels.stderr
    neither = cli("data", "train-classifier", "--out", str(tmp_path / "x"))
    assert neither.returncode == 2 and "--labelled" in neither.stderr
    bad_key = cli(*common[:-1], "label", "--positive-labels", "0", "--out", str(tmp_path / "x"))
    assert (
        bad_key.returncode == 2
        and "no column 'label'" in bad_key.stderr
        and "Traceback" not in bad_key.stderr
    )
    assert not (tmp_path / "x").exists()
