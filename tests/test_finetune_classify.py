"""`llmforge finetune classify`: a tiny BERT learns a separable two-class task (words w0..w31 → "low",
w32..w63 → "high"), beats its untrained head, repeats itself for a seed, and leaves a checkpoint that
AutoModelForSequenceClassification loads and predicts with."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import tomli_w
from pretrain_tokens import objective_tokens

from llmforge.console import UserError
from llmforge.recipe import load_recipe


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny randomly initialised BertForMaskedLM with the word-level tokenizer of the pretrain tests, saved
    the way our mlm pretraining saves one (HF dir, tokenizer files inside)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    root = tmp_path_factory.mktemp("base")
    objective_tokens(root / "tokens", n=500)
    tokenizer = AutoTokenizer.from_pretrained(root / "tokens-tokenizer")
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return root / "bert"


def rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        high = rng.random() < 0.5
        words = [f"w{rng.randrange(32) + 32 * high}" for _ in range(rng.randint(4, 10))]
        out.append({"text": " ".join(words), "label": "high" if high else "low"})
    return out


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_jsonl(root / "train.jsonl", rows(160, 1)),
        "val": write_jsonl(root / "val.jsonl", rows(60, 2)),
    }


def recipe(tmp: Path, base: Path, data: dict, **finetune) -> Path:
    table = {
        "task": "classification", "base": str(base), "train_file": str(data["train"]), "val_file": str(data["val"]),
        "max_len": 16, "epochs": 4, "lr": 3e-3, "batch_size": 16, "seed": 3, **finetune,
    }  # fmt: skip
    table = {k: v for k, v in table.items() if v is not None}  # None: leave the key out
    tmp.mkdir(exist_ok=True)
    path = tmp / "ft.toml"
    path.write_text(tomli_w.dumps({"run": {"name": "ft", "out_dir": str(tmp)}, "finetune": table}))
    return path


def classify(path: Path, *overrides: str) -> dict:
    from llmforge.finetune.classify import run_classification

    return run_classification(load_recipe(path, overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base, data) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    return classify(recipe(tmp, base, data))


def test_learns_the_task_and_beats_the_untrained_head(trained):
    assert trained["accuracy"] >= 0.9
    assert trained["macro_f1"] >= 0.9
    assert trained["accuracy"] > trained["untrained"]["accuracy"] + 0.2
    assert trained["labels"] == ["high", "low"]


def test_report_holds_results_metrics_and_confusion_matrix(trained):
    report = Path(trained["report"])
    results = json.loads((report / "results.json").read_text())
    matrix = results["confusion_matrix"]
    assert sum(map(sum, matrix)) == results["rows"] == 60
    assert results["accuracy"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 60)
    assert {k: v["support"] for k, v in results["per_class"].items()} == {
        "high": sum(matrix[0]),
        "low": sum(matrix[1]),
    }
    history = [json.loads(x) for x in (report / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]
    assert max(h["macro_f1"] for h in history) == results["macro_f1"]
    assert (report / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((report / "manifest.json").read_text())["kind"] == "report"


def test_checkpoint_loads_and_predicts(trained, data):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    checkpoint = Path(trained["checkpoint"])
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    assert manifest["kind"] == "checkpoint"
    inputs = {Path(i["path"]).name: i for i in manifest["inputs"]}
    assert set(inputs) == {"bert", "train.jsonl", "val.jsonl"}
    assert all(i["content_hash"].startswith("sha256:") for i in inputs.values())
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert model.config.id2label == {0: "high", 1: "low"}
    texts = ["w40 w50 w33 w61 w45", "w1 w7 w20 w3 w30"]
    lead = [tokenizer.bos_token_id]  # what classify puts in front of a tokenizer without [CLS]
    batch = [lead + tokenizer(t)["input_ids"] for t in texts]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(batch)).logits
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == ["high", "low"]


def test_same_seed_same_metrics_other_seed_other(tmp_path, base, data, trained):
    def history(results: dict) -> list[dict]:
        return [json.loads(x) for x in Path(results["report"], "metrics.jsonl").read_text().splitlines()]

    expected = history(trained)
    again = classify(recipe(tmp_path / "again", base, data))
    assert history(again) == expected
    assert again["confusion_matrix"] == trained["confusion_matrix"]
    other = classify(recipe(tmp_path / "other", base, data, seed=4))
    assert history(other)[1]["train_loss"] != expected[1]["train_loss"]


def test_val_fraction_holds_out_train_rows(tmp_path, base, data):
    path = recipe(tmp_path, base, data, val_file=None, val_fraction=0.25, epochs=1)
    from llmforge.finetune.classify import prepare

    job = prepare(load_recipe(path))
    assert (len(job.train), len(job.val)) == (120, 40)
    assert not {ex.row for ex in job.train} & {ex.row for ex in job.val}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (
            b'{"text": "w1", "label": "low"}\n{"text": "w40"}\n',
            "train.jsonl:2: the row lacks a string or integer field 'label'",
        ),
        (
            b'{"text": "w1", "label": "low"}\n{"body": "w40", "label": "high"}\n',
            "train.jsonl:2: the row lacks a string field 'text'",
        ),
        (b"", "empty file"),
        (b'{"text": "w1", "label": "low"}\n{"text": "w2", "label": "low"}\n', "needs at least two classes"),
        (
            b'{"text": "w1", "label": "low"}\n{"text": "caf\xe9", "label": "high"}\n',
            "train.jsonl:2: not UTF-8",
        ),
        (b'{"text": "w1", "label": "low"}\n{"text": \n', "train.jsonl:2: not a JSON object"),
        (b'{"text": "w1", "label": 1}\n{"text": "w2", "label": "high"}\n', "use one type for every label"),
    ],
    ids=["no label", "no text", "empty", "one class", "not utf-8", "not json", "mixed label types"],
)
def test_bad_train_file(tmp_path, base, data, content, phrase):
    train = tmp_path / "train.jsonl"
    train.write_bytes(content)
    with pytest.raises(UserError, match=phrase.replace("(", r"\(")):
        classify(recipe(tmp_path, base, {**data, "train": train}))


def test_val_label_unseen_in_train(tmp_path, base, data):
    val = write_jsonl(
        tmp_path / "val.jsonl", [{"text": "w1", "label": "low"}, {"text": "w2", "label": "mid"}]
    )
    with pytest.raises(UserError, match="val.jsonl:2: label 'mid' does not occur in the train rows"):
        classify(recipe(tmp_path, base, {**data, "val": val}))


def test_bad_base(tmp_path, base, data):
    causal = tmp_path / "causal"
    shutil.copytree(base, causal)
    config = json.loads((causal / "config.json").read_text())
    (causal / "config.json").write_text(
        json.dumps({**config, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    with pytest.raises(UserError, match="a causal LM only"):
        classify(recipe(tmp_path, causal, data))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (causal / name).unlink()
    (causal / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="no tokenizer files"):
        classify(recipe(tmp_path, causal, data))
    with pytest.raises(UserError, match=r"not a Hugging Face model dir \(no config.json\)"):
        classify(recipe(tmp_path, data["train"].parent, data))


def test_unwritable_out_is_refused_before_training(tmp_path, base, data):
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="is a file"):
        classify(recipe(tmp_path, base, data, out=str(tmp_path / "afile" / "ft")))


def test_cli_prints_json_results(tmp_path, base, data):
    from conftest import run_cli

    r = run_cli("finetune", "classify", str(recipe(tmp_path, base, data, epochs=1)), "--json", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)
    assert results["best_epoch"] == 1
    assert Path(results["checkpoint"], "model.safetensors").is_file()


def test_example_data_is_balanced_disjoint_and_detokenized(tmp_path):
    from conftest import SHARED_DATA

    from llmforge.finetune.example_data import make_example_data

    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    counts = make_example_data(SHARED_DATA, tmp_path / "d", per_class=50, val_per_class=10, seed=0)
    assert counts == {"train.jsonl": 100, "val.jsonl": 20}
    split = {n: [json.loads(x) for x in (tmp_path / "d" / n).read_text().splitlines()] for n in counts}
    assert sorted(r["label"] for r in split["val.jsonl"]) == ["shakespeare"] * 10 + ["wiki"] * 10
    assert not {r["text"] for r in split["train.jsonl"]} & {r["text"] for r in split["val.jsonl"]}
    texts = " ".join(r["text"] for rows_ in split.values() for r in rows_)
    assert "<unk>" not in texts and " @-@ " not in texts and " , " not in texts
    again = make_example_data(SHARED_DATA, tmp_path / "d", per_class=50, val_per_class=10, seed=0)
    assert (
        again == counts
        and [json.loads(x) for x in (tmp_path / "d" / "val.jsonl").read_text().splitlines()]
        == split["val.jsonl"]
    )


def test_integer_labels_sort_numerically(tmp_path, base):
    from llmforge.finetune.classify import prepare

    items = [{"text": f"w{i}", "label": label} for i, label in enumerate([10, 2, 10, 2, 1])]
    train = write_jsonl(tmp_path / "train.jsonl", items)
    job = prepare(load_recipe(recipe(tmp_path, base, {"train": train, "val": train})))
    assert job.labels == [1, 2, 10] and job.names == ["1", "2", "10"]
