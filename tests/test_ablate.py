"""`llmforge ablate`: variants × seeds as real pretrain runs; the report's mean ± std and Welch's t-test equal a
direct computation from the runs' own results; a second run reuses every finished run; bad --vary exits 2."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from pretrain_tokens import markov_tokens, write_recipe

from llmforge.sweep.significance import compare, welch

TRAIN = {"max_steps": 20, "eval_every": 10, "checkpoint_every": 20, "log_every": 5}


@pytest.mark.slow
def test_ablation_statistics_equal_a_direct_computation(tmp_path, cli):
    from scipy import stats

    tokens = markov_tokens(tmp_path / "tokens")
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", train={**TRAIN, "tokens": str(tokens)})
    out = tmp_path / "ablation"
    argv = [
        "ablate",
        str(recipe),
        "--vary",
        "train.lr=1e-4,2e-2",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--json",
    ]
    r = cli(*argv)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    results = json.loads((out / "report" / "results.json").read_text())
    by_variant: dict[str, list[float]] = {}
    for run in results["runs"]:
        own = json.loads((Path(run["run_dir"]) / "result.json").read_text())
        assert run["value"] == own["final_val_loss"]
        by_variant.setdefault(run["variant"], []).append(own["final_val_loss"])
    assert sorted(run["seed"] for run in results["runs"]) == [7, 7, 8, 8]  # run.seed, run.seed + 1
    for v in summary["variants"]:
        assert v["mean"] == pytest.approx(statistics.fmean(by_variant[v["name"]]))
        assert v["std"] == pytest.approx(statistics.stdev(by_variant[v["name"]]))
    (test,) = summary["tests"]
    direct = stats.ttest_ind(by_variant["train.lr=0.02"], by_variant["train.lr=0.0001"], equal_var=False)
    assert test["t"] == pytest.approx(direct.statistic) and test["p"] == pytest.approx(direct.pvalue)
    assert test["variant"] == "train.lr=0.02" and test["baseline"] == "train.lr=0.0001"
    assert (out / "report" / "ablation.png").stat().st_size > 5000
    logs = {run["run_dir"]: (Path(run["run_dir"]) / "log.txt").read_text() for run in results["runs"]}
    again = cli(*argv)  # everything finished: nothing runs again, the same report
    assert again.returncode == 0 and json.loads(again.stdout)["variants"] == summary["variants"]
    assert all((Path(d) / "log.txt").read_text() == text for d, text in logs.items())


def test_welch_equals_scipy_and_the_verdict_follows_the_direction():
    from scipy import stats

    a, b = [3.1, 3.3, 3.2, 3.25], [3.6, 3.5, 3.7]
    got = welch(a, b)
    direct = stats.ttest_ind(a, b, equal_var=False)
    assert got["t"] == pytest.approx(direct.statistic) and got["p"] == pytest.approx(direct.pvalue)
    variants = [{"name": "base", "mean": statistics.fmean(b), "values": b},
                {"name": "new", "mean": statistics.fmean(a), "values": a}]  # fmt: skip
    assert compare(variants, "minimize", alpha=0.05)[0]["verdict"] == "better"
    assert compare(variants, "maximize", alpha=0.05)[0]["verdict"] == "worse"
    assert compare(variants, "minimize", alpha=1e-9)[0]["verdict"] == "not significant"


@pytest.mark.parametrize(
    "vary, phrase",
    [
        ([], "at least one --vary"),
        (["train.lr"], "expected KEY=V1,V2"),
        (["train.lr=1e-3"], "nothing to compare"),
        (["train.lr=1e-3,1e-3"], "repeats"),
        (["train.nope=1,2"], "nope"),
        (["train.lr=1e-3,-1"], "train.lr"),
    ],
)
def test_bad_ablations_exit_2_before_any_run(tmp_path, cli, vary, phrase):
    tokens = markov_tokens(tmp_path / "tokens")
    recipe = write_recipe(tmp_path / "r.toml", tmp_path / "runs", train={**TRAIN, "tokens": str(tokens)})
    args = [a for v in vary for a in ("--vary", v)]
    r = cli("ablate", str(recipe), *args, "--out", str(tmp_path / "a"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert phrase in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "a" / "runs").exists() or not any((tmp_path / "a" / "runs").glob("*/seed-*"))
