"""`plan ladder` writes rungs a user can run as written: on the base run's tokens, sized against that data,
with nothing inherited that only made sense for the base run (issue 13, "the first hour")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from pretrain_tokens import markov_tokens, write_recipe

from llmforge.recipe import tomllib

TRAIN_TOKENS = 36_000  # markov_tokens' default 40,000 tokens, 90% train


@pytest.fixture
def base(tmp_path) -> Path:
    """A base run whose tokens exist (tmp/base/tokens); its recipe keeps every 10th checkpoint."""
    markov_tokens(tmp_path / "base" / "tokens")
    return write_recipe(tmp_path / "base.toml", tmp_path, name="base", train={"keep_every": 10})


def _ladder(cli, base: Path, out: Path, *args: str) -> tuple[dict, str]:
    r = cli("plan", "ladder", "--base", str(base), "--out", str(out), *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def _rungs(out: Path) -> dict[str, dict]:
    return {p.name: tomllib.loads(p.read_text()) for p in sorted(out.glob("*.toml"))}


def test_ladder_rungs_read_the_base_runs_tokens(cli, base, tmp_path):
    report, _ = _ladder(cli, base, tmp_path / "ladder", "--budgets", "1e11,3e11", "--sizes", "3")
    rungs = _rungs(tmp_path / "ladder")
    assert len(rungs) == len(report["rungs"]) >= 2
    for name, recipe in rungs.items():
        assert recipe["train"]["tokens"] == str(tmp_path / "base" / "tokens"), name
        assert recipe["run"]["out_dir"] == str(tmp_path)  # rung runs sit beside the base run
        assert set(recipe) == {"run", "model", "train"}  # no [data]/[tokenizer] to rebuild per rung
        check = cli("recipe", "check", str(tmp_path / "ladder" / name))
        assert check.returncode == 0, check.stderr


def test_ladder_rungs_do_not_inherit_keep_every(cli, base, tmp_path):
    _ladder(cli, base, tmp_path / "ladder", "--budgets", "1e11", "--sizes", "3")
    for recipe in _rungs(tmp_path / "ladder").values():
        assert "keep_every" not in recipe["train"]


def test_ladder_steps_are_checked_against_the_corpus(cli, base, tmp_path):
    """Each rung reports its epochs over the base run's training tokens, and rungs past 4 epochs are named
    in a warning (Muennighoff et al. 2023)."""
    report, stderr = _ladder(cli, base, tmp_path / "ladder", "--budgets", "1e11,1e12", "--sizes", "3")
    assert report["train_tokens"] == TRAIN_TOKENS
    epochs = {r["budget"]: r["epochs"] for r in report["rungs"]}
    for rung in report["rungs"]:
        assert rung["epochs"] == pytest.approx(rung["tokens"] / TRAIN_TOKENS)
    assert epochs[1e11] < 4 < epochs[1e12]
    (warning,) = report["warnings"]
    assert "more than 4 times" in warning and "warning:" in stderr and "--max-epochs" in stderr


def test_max_epochs_leaves_out_rungs_that_repeat_the_data(cli, base, tmp_path):
    report, _ = _ladder(
        cli, base, tmp_path / "ladder", "--budgets", "1e11,1e12", "--sizes", "3", "--max-epochs", "4"
    )
    assert {r["budget"] for r in report["rungs"]} == {1e11}
    assert any("above --max-epochs 4" in s for s in report["skipped"])
    assert report["warnings"] == []
    everything = cli("plan", "ladder", "--base", str(base), "--out", str(tmp_path / "l2"), "--budgets", "1e12",
                     "--sizes", "3", "--max-epochs", "4")  # fmt: skip
    assert everything.returncode == 2 and "--max-epochs 4" in everything.stderr
    assert not (tmp_path / "l2").exists()


def test_ladder_before_the_tokens_exist_points_at_where_they_will_be(cli, tmp_path):
    recipe = write_recipe(tmp_path / "base.toml", tmp_path, name="base", model={"vocab_size": 64})
    report, stderr = _ladder(cli, recipe, tmp_path / "ladder", "--budgets", "1e11", "--sizes", "3")
    assert report["train_tokens"] is None and report["rungs"][0]["epochs"] is None
    assert "does not exist yet" in stderr
    (rung,) = _rungs(tmp_path / "ladder").values()
    assert rung["train"]["tokens"] == str(tmp_path / "base" / "tokens")


def test_ladder_runs_as_written(base, tmp_path):
    """The loop the ladder prints, run from another directory: the smallest rung (6 steps) pretrains on the
    base run's tokens and its run has exactly the parameters and tokens the ladder planned."""
    out = tmp_path / "ladder"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    plan = subprocess.run(
        ["llmforge", "plan", "ladder", "--base", str(base), "--out", str(out), "--budgets", "2e9", "--sizes", "3",
         "--spread", "40", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)
    (rung,) = report["rungs"]
    assert rung["steps"] <= 10
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        ["bash", "-c", report["run"]], capture_output=True, text=True, env=env, cwd=elsewhere, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / rung["name"] / "reports" / "pretrain" / "results.json").read_text())
    assert results["params"] == rung["params"]
    assert results["tokens_seen"] == rung["tokens"]
    assert (tmp_path / rung["name"] / "checkpoints" / f"step-{rung['steps']:06d}").is_dir()
    assert not (elsewhere / "runs").exists()


def test_ladder_never_replaces_a_file_or_folder_it_did_not_write(cli, base, tmp_path):
    """--out once replaced whatever stood there (a recipe file became the ladder folder)."""
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for out in (mine, base):
        r = cli("plan", "ladder", "--base", str(base), "--out", str(out), "--budgets", "1e11", "--sizes", "3")
        assert r.returncode == 2 and "--out" in r.stderr
    assert (mine / "keep.txt").read_text() == "mine" and base.is_file()


def test_ladder_rerun_replaces_its_own_ladder(cli, base, tmp_path):
    _ladder(cli, base, tmp_path / "ladder", "--budgets", "1e11", "--sizes", "3")
    report, _ = _ladder(cli, base, tmp_path / "ladder", "--budgets", "1e12", "--sizes", "3")
    assert {r["budget"] for r in report["rungs"]} == {1e12}
    assert all("C1e12" in name for name in _rungs(tmp_path / "ladder"))
