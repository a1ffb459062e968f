"""The side-by-side table (benchmarks/summary.py): every ratio is our speed over the peer's, whatever unit the
benchmark recorded (seconds are inverted), and results of an older format are left out, not crashed on."""

from __future__ import annotations

import json

import pytest

from benchmarks.summary import markdown, summarize


def write(d, name, obj):
    (d / f"{name}.json").write_text(json.dumps({"machine": {"platform": "test"}, **obj}))


def test_ratios_are_our_speed_over_the_peers(tmp_path):
    write(tmp_path, "data", {"ours_vs_bare_datatrove": {"ours_s": 2.0, "bare_s": 4.0, "ratio": 0.5}})
    write(tmp_path, "eval", {"task": "piqa", "llmforge_examples_per_s": 30.0, "lm_eval_cli_examples_per_s": 10.0,
                             "same_accuracy": True})  # fmt: skip
    write(
        tmp_path,
        "litgpt",
        {"quick": True, "tokens_per_s": {"ours_compiled": 90, "ours_eager": 45, "litgpt": 100}},
    )
    write(
        tmp_path, "serve", {"single_client": {"ours_tokens_per_s": 80.0, "bare_generate_tokens_per_s": 100.0}}
    )
    write(tmp_path, "bias", {"old_format": 1})
    rows = {r["stage"]: r for r in summarize(tmp_path)}
    assert rows["data build (stdlib code; ftfy, gopher_repetition, fineweb)"]["ratio"] == 2.0  # half the time
    assert rows["eval piqa"]["ratio"] == 3.0 and rows["eval piqa"]["same_result"] is True
    assert rows["pretrain clm, compiled (llama 4 × 128)"]["ratio"] == pytest.approx(0.9)
    assert rows["pretrain clm, eager (llama 4 × 128)"]["quick"] is True
    assert rows["serve (HTTP, streaming)"]["ratio"] == 0.8
    assert not any(stage.startswith("bias") for stage in rows)  # lacks its keys: left out
    table = markdown(list(rows.values()))
    assert "| eval piqa | lm-eval CLI | examples/s | 30 | 10 | 3.00 (same result) |" in table


def test_the_committed_results_all_summarize():
    """Every committed result file a summary reads gives its rows (a renamed key would drop a row silently)."""
    from pathlib import Path

    from benchmarks.summary import EXTRACTORS

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    expected = {name for name in EXTRACTORS if (results / f"{name}.json").is_file()}
    rows = summarize(results)
    assert {r["benchmark"] for r in rows} == expected and len(expected) >= 8
    assert all(r["ratio"] > 0 and r["ours"] > 0 and r["peer"] > 0 for r in rows)
