"""`llmforge eval compare`: reports of several checkpoints side by side, with deltas and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmforge.eval import report


def _report(path: Path, model: Path, acc: float, ppl: float | None = None) -> Path:
    results = {"results": {"piqa": {"alias": "piqa", "acc,none": acc, "acc_stderr,none": 0.02}}}
    if ppl is not None:
        results = {"results": {"perplexity:val": {"perplexity,none": ppl, "tokens": 100}}}
    return report.write(path, results, title="t", model_dir=model, recipe={}, inputs=[])


def test_compare_shows_deltas_between_two_checkpoints(cli, tmp_path):
    models = tmp_path / "models"
    early = _report(tmp_path / "eval" / "step-000050", models / "step-000050", 0.50)
    final = _report(tmp_path / "eval" / "step-000300", models / "step-000300", 0.58)
    early_ppl = _report(tmp_path / "ppl" / "step-000050", models / "step-000050", 0, ppl=80.0)
    final_ppl = _report(tmp_path / "ppl" / "step-000300", models / "step-000300", 0, ppl=30.0)
    png = tmp_path / "cmp.png"
    r = cli("eval", "compare", *map(str, [early, early_ppl, final, final_ppl]), "--png", str(png), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["models"] == ["step-000050", "step-000300"]
    rows = {(row["task"], row["metric"]): row for row in out["rows"]}
    assert rows[("piqa", "acc")]["delta"] == pytest.approx(0.08)
    assert rows[("piqa", "acc")]["stderr"] == {"step-000050": 0.02, "step-000300": 0.02}
    assert rows[("perplexity:val", "perplexity")]["delta"] == pytest.approx(-50.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_columns_of_two_runs_at_the_same_step_stay_apart(cli, tmp_path):
    reports = [
        _report(
            tmp_path / run / "reports" / "eval" / "step-000100",
            tmp_path / run / "checkpoints" / "step-000100",
            acc,
        )
        for run, acc in (("small", 0.5), ("large", 0.6))
    ]
    r = cli("eval", "compare", *map(str, reports), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["models"] == ["small/step-000100", "large/step-000100"]
    (row,) = out["rows"]
    assert row["values"] == {"small/step-000100": 0.5, "large/step-000100": 0.6}
    assert row["delta"] == pytest.approx(0.1)


def test_models_sharing_a_label_are_named_by_their_path(cli, tmp_path):
    a = _report(tmp_path / "ra", tmp_path / "x" / "model", 0.25)
    b = _report(tmp_path / "rb", tmp_path / "y" / "model", 0.75)
    out = json.loads(cli("eval", "compare", str(a), str(b), "--json").stdout)
    assert out["models"] == [str(tmp_path / "x" / "model"), str(tmp_path / "y" / "model")]


def test_png_pointing_at_a_directory_exits_2_before_reading(cli, tmp_path):
    r = cli("eval", "compare", str(tmp_path / "missing"), "--png", str(tmp_path))
    assert r.returncode == 2 and f"--png {tmp_path}: is a directory" in r.stderr


def test_compare_table_and_wrong_kind(cli, tmp_path):
    a = _report(tmp_path / "a", tmp_path / "ckpt-a", 0.25)
    b = _report(tmp_path / "b", tmp_path / "ckpt-b", 0.75)
    r = cli("eval", "compare", str(a), str(b))
    assert r.returncode == 0, r.stderr
    assert "+0.5" in r.stdout and "ckpt-a" in r.stdout  # results go to stdout
    from llmforge.artifacts import write_manifest

    (tmp_path / "ds").mkdir()
    write_manifest(tmp_path / "ds", "dataset")
    r = cli("eval", "compare", str(tmp_path / "ds"))
    assert r.returncode == 2 and "expected a report artifact" in r.stderr
