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


def test_samples_writes_a_review_sheet(cli, tmp_path, shared_data):
    model = build_tiny_model(tmp_path / "model", shared_data / "tinyshakespeare" / "input.txt")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "To be or not"}\n{"prompt": "The king said"}\n')
    r = cli(
        "eval",
        "samples",
        str(model),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "sheet.csv"),
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "sheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["prompt"] for row in rows] == ["To be or not", "The king said"]
    assert all(row["output"] and row["rating"] == "" for row in rows)
