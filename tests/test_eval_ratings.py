"""Review sheets (`eval samples`) and their aggregation (`eval ratings`, Krippendorff's alpha)."""

from __future__ import annotations

import csv
import json

import pytest
from eval_tiny_model import build_tiny_model

from llmforge.eval.ratings import krippendorff_alpha

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", §C: 4 observers, 12 units, missing values.
# Published results: nominal alpha = 0.743, interval alpha = 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _units():
    return [[r[i] for r in KRIPPENDORFF_2011 if r[i] is not None] for i in range(12)]


def test_krippendorff_alpha_reproduces_the_published_example():
    assert krippendorff_alpha(_units(), "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(_units(), "interval") == pytest.approx(0.849, abs=5e-4)


def test_perfect_agreement_is_one():
    assert krippendorff_alpha([[1, 1], [3, 3], [5, 5]]) == 1.0


def _sheet(path, ratings):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "output", "rating", "comment"])
        for i, r in enumerate(ratings, 1):
            w.writerow([i, f"p{i}", f"o{i}", "" if r is None else r, ""])
    return path


def test_ratings_cli_aggregates_several_raters(cli, tmp_path):
    sheets = [_sheet(tmp_path / f"rater{k}.csv", row) for k, row in enumerate(KRIPPENDORFF_2011)]
    r = cli("eval", "ratings", *map(str, sheets), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    values = [v for row in KRIPPENDORFF_2011 for v in row if v is not None]
    assert out["ratings"] == len(values) and out["items"] == 12
    assert out["mean"] == pytest.approx(sum(values) / len(values))
    assert out["distribution"]["2"] == values.count(2)
    assert out["krippendorff_alpha"] == pytest.approx(0.849, abs=5e-4)


def test_ratings_reject_non_numbers(cli, tmp_path):
    r = cli("eval", "ratings", str(_sheet(tmp_path / "a.csv", ["good"])))
    assert r.returncode == 2 and "is not a number" in r.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_non_finite_ratings_are_refused_naming_the_row(cli, tmp_path, value):
    sheet = _sheet(tmp_path / "a.csv", [4, value, 5])
    r = cli("eval", "ratings", str(sheet))
    assert r.returncode == 2, r.stderr
    assert f"{sheet}:3: rating '{value}' is not a finite number" in r.stderr


def test_a_sheet_that_is_not_utf8_exits_2_naming_it(cli, tmp_path):
    sheet = tmp_path / "latin1.csv"
    sheet.write_bytes("id,prompt,output,rating,comment\n1,caf\xe9,o,4,tr\xe8s bien\n".encode("latin-1"))
    r = cli("eval", "ratings", str(sheet))
    assert r.returncode == 2, r.stderr
    assert f"{sheet}: not UTF-8 text" in r.stderr and "Traceback" not in r.stderr


def test_a_sheet_saved_with_a_byte_order_mark_reads(cli, tmp_path):
    sheet = tmp_path / "excel.csv"
    sheet.write_bytes(b"\xef\xbb\xbf" + b"id,prompt,output,rating,comment\n1,p,o,4,\n")
    r = cli("eval", "ratings", str(sheet), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mean"] == 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    return build_tiny_model(
        tmp_path_factory.mktemp("samples") / "model", shared_data / "tinyshakespeare" / "input.txt"
    )


def test_samples_writes_a_review_sheet(cli, tmp_path, model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "To be or not"}\n{"prompt": "The king said"}\n')
    args = [
        "eval",
        "samples",
        str(model_dir),
        "--prompts",
        str(prompts),
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
    ]
    r = cli(*args, "--out", str(tmp_path / "sheet.csv"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "sheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["prompt"] for row in rows] == ["To be or not", "The king said"]
    assert all(row["output"] and row["rating"] == "" for row in rows)

    again = cli(*args, "--out", str(tmp_path / "sheet.csv"))  # the sheet may hold ratings by now
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr


def test_samples_out_pointing_at_a_directory_exits_2_before_generating(cli, tmp_path, model_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("To be or not\n")
    r = cli("eval", "samples", str(model_dir), "--prompts", str(prompts), "--out", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert f"--out {tmp_path}: is a directory" in r.stderr


PROMPTS = ["To be", "The king said unto the fool that", "O", "Now is the winter of our discontent, made"]


def _generate_with_counted_forwards(model_dir, batch_size):
    """Greedy completions, and the number of new tokens each forward pass was given."""
    from llmforge.eval.checkpoint import load
    from llmforge.eval.samples import generate

    model, tokenizer = load(model_dir, "cpu")
    model.config.use_cache = False  # what pretrain wrote into checkpoints before it was fixed
    model.generation_config.use_cache = False
    widths = []
    forward = model.forward

    def counted(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    model.forward = counted
    out = generate(
        model, tokenizer, PROMPTS, max_new_tokens=6, temperature=0.0, seed=0, batch_size=batch_size
    )
    return out, widths


def test_batched_samples_match_one_prompt_at_a_time_and_use_the_kv_cache(model_dir):
    batched, widths = _generate_with_counted_forwards(model_dir, batch_size=4)
    alone, _ = _generate_with_counted_forwards(model_dir, batch_size=1)
    assert batched == alone  # left padding changes no prompt's completion
    assert len(widths) <= 6  # one batch: a prompt pass, then one pass per new token
    assert widths[1:] == [1] * (len(widths) - 1)  # the KV cache holds the prefix, whatever the config says
