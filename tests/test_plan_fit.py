"""Scaling-law fitting recovers known constants from synthetic runs; runs load from dirs, JSON and CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmforge.console import UserError
from llmforge.plan.fit import fit_scaling_law, isoflop_groups
from llmforge.plan.fit_report import fit_report
from llmforge.plan.observations import load_observations
from llmforge.plan.scaling_laws import HOFFMANN_APPROACH3 as TRUTH

BUDGETS = (1e17, 1e18, 1e19, 1e20)


def synthetic_runs(noise: float, seed: int = 0):
    """Seven sizes from N_opt/4 to 4·N_opt per budget, losses from Hoffmann et al.'s law × lognormal noise."""
    rng = np.random.default_rng(seed)
    params = np.array([TRUTH.optimal_params(c) * f for c in BUDGETS for f in np.geomspace(0.25, 4, 7)])
    tokens = np.repeat(BUDGETS, 7) / (6 * params)
    losses = TRUTH.loss(params, tokens) * np.exp(rng.normal(0, noise, len(params)))
    return params, tokens, losses


def test_recovers_known_constants_without_noise():
    """Tolerance: exponents within 0.005, E within 0.5%, A and B within 5% (A, B are ill-conditioned)."""
    result = fit_scaling_law(*synthetic_runs(0.0), bootstrap=0)
    law = result.law
    assert law.alpha == pytest.approx(TRUTH.alpha, abs=0.005)
    assert law.beta == pytest.approx(TRUTH.beta, abs=0.005)
    assert law.E == pytest.approx(TRUTH.E, rel=0.005)
    assert law.A == pytest.approx(TRUTH.A, rel=0.05)
    assert law.B == pytest.approx(TRUTH.B, rel=0.05)


def test_recovers_constants_and_allocation_with_noise():
    """0.2% loss noise: exponents within 0.02, E within 5%, N_opt ∝ C^a exponent within 0.02."""
    law = fit_scaling_law(*synthetic_runs(0.002), bootstrap=0).law
    assert law.alpha == pytest.approx(TRUTH.alpha, abs=0.02)
    assert law.beta == pytest.approx(TRUTH.beta, abs=0.02)
    assert law.E == pytest.approx(TRUTH.E, rel=0.05)
    assert law.params_exponent == pytest.approx(TRUTH.params_exponent, abs=0.02)


def test_bootstrap_intervals_bracket_the_estimate():
    result = fit_scaling_law(*synthetic_runs(0.002), bootstrap=8, seed=1)
    assert set(result.intervals) == {"E", "A", "B", "alpha", "beta"}
    lo, hi = result.intervals["alpha"]
    assert lo < hi
    assert lo - 0.01 <= result.law.alpha <= hi + 0.01


def test_isoflop_groups():
    params, tokens, _ = synthetic_runs(0.0)
    groups = isoflop_groups(params, tokens)
    assert [len(g) for g in groups] == [7, 7, 7, 7]


def test_too_few_runs():
    with pytest.raises(UserError, match="at least 5"):
        fit_scaling_law(np.ones(3) * 1e6, np.ones(3) * 1e8, np.ones(3) * 3.0)


def _write_run(root, name, params, tokens, loss):
    results = root / name / "reports" / "pretrain"
    results.mkdir(parents=True)
    (results / "results.json").write_text(
        json.dumps({"params": params, "tokens_seen": tokens, "final_val_loss": loss})
    )
    return root / name


def test_fit_report_from_run_dirs_with_png(tmp_path):
    params, tokens, losses = synthetic_runs(0.0)
    runs = [
        _write_run(tmp_path, f"run{i}", *row)
        for i, row in enumerate(zip(params, tokens, losses, strict=True))
    ]
    report = fit_report(runs, bootstrap=0, at=[1e21], png=tmp_path / "fit.png")
    assert report["runs"] == 28 and report["isoflop_groups"] == 4
    assert report["alpha"] == pytest.approx(TRUTH.alpha, abs=0.005)
    assert report["allocation"][0]["params"] == pytest.approx(TRUTH.optimal_params(1e21), rel=0.05)
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_observations_from_json_and_csv(tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps({"runs": [{"N": 1e6, "D": 2e7, "loss": 4.0}]}))
    (tmp_path / "rows.csv").write_text("params,tokens,loss\n2e6,4e7,3.5\n")
    rows = load_observations([tmp_path / "rows.json", tmp_path / "rows.csv"])
    assert [(r.params, r.tokens, r.loss) for r in rows] == [(1e6, 2e7, 4.0), (2e6, 4e7, 3.5)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("params,tokens\n1,2\n", "has no"),
        ("params,tokens,loss\n1,2,nan\n", "finite"),
        ("params,tokens,loss\n1,x,3\n", "not a number"),
    ],
)
def test_bad_rows_are_user_errors(tmp_path, content, message):
    (tmp_path / "rows.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        load_observations([tmp_path / "rows.csv"])


def test_unfinished_run_dir(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="reports/pretrain/results.json"):
        load_observations([tmp_path / "run"])
