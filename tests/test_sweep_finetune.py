"""`llmforge sweep --stage finetune`: trials are real `finetune sft` runs of a tiny llama on a learnable echo
task; the objective is the run's final eval loss, or an eval task's metric (`eval:piqa.acc`, run offline by
`llmforge eval run` on each trial's checkpoint)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_tiny_model import build_tiny_model  # noqa: E402
from test_finetune_sft import recipe_file  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory, shared_data) -> Path:
    return build_tiny_model(
        tmp_path_factory.mktemp("sweep-ft") / "base",
        shared_data / "tinyshakespeare" / "input.txt",
        vocab_size=400,
    )


def _space(tmp_path: Path, text: str) -> Path:
    (tmp_path / "space.toml").write_text(text)
    return tmp_path / "space.toml"


def _trials(out: Path) -> list[dict]:
    return json.loads((out / "report" / "results.json").read_text())["trials"]


def test_a_finetune_sweep_scores_each_trial_by_its_own_eval_loss(tmp_path, base, cli):
    recipe = recipe_file(tmp_path, base, max_steps=16, eval_every=4)
    space = _space(
        tmp_path,
        'sampler = "grid"\npruner = "none"\ntrials = 2\n[space]\n'
        '"finetune.lr" = { type = "log-float", values = [1e-6, 3e-3] }\n',
    )
    out = tmp_path / "sweep"
    r = cli("sweep", str(recipe), "--space", str(space), "--stage", "finetune", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _trials(out)
    assert sorted(t["params"]["finetune.lr"] for t in trials) == [1e-6, 3e-3]
    assert json.loads(r.stdout)["best"]["params"] == {"finetune.lr": 3e-3}
    values = {}
    for t in trials:
        run = Path(t["run_dir"])
        result = json.loads((run / "result.json").read_text())
        assert t["state"] == "complete" and t["value"] == result["val_loss"]
        assert Path(result["checkpoint"]).is_relative_to(run)  # each trial's outputs stay in its run dir
        curve = [json.loads(line) for line in (run / "finetune" / "report" / "metrics.jsonl").open()]
        evals = {row["step"]: row["eval_loss"] for row in curve if "eval_loss" in row}
        assert t["curve"] == {str(k): v for k, v in evals.items()} and max(evals) == 16  # the last point too
        values[t["params"]["finetune.lr"]] = t["value"]
    assert values[1e-6] - values[3e-3] > 0.5  # the rate that learns the echo task wins by a margin


def test_an_eval_metric_objective_is_the_task_score_of_each_trials_checkpoint(
    tmp_path, base, cli, shared_data
):
    recipe = recipe_file(tmp_path, base, max_steps=4, eval_every=2)
    with recipe.open("a") as f:
        f.write(f'\n[eval]\nlimit = 12\ndata_dir = "{shared_data}"\n')
    space = _space(
        tmp_path,
        'metric = "eval:piqa.acc"\ntrials = 2\nfirst = [{ "finetune.lr" = 1e-4 }, { "finetune.lr" = 1e-3 }]\n'
        '[space]\n"finetune.lr" = { type = "log-float", low = 1e-5, high = 1e-2 }\n',
    )
    out = tmp_path / "sweep"
    r = cli("sweep", str(recipe), "--space", str(space), "--stage", "finetune", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _trials(out)
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for t in trials:
        saved = Path(t["run_dir"]) / "reports" / "sweep-eval" / "piqa" / "results.json"
        scores = json.loads(saved.read_text())["results"]["piqa"]
        assert t["value"] == scores["acc,none"] and 0 <= t["value"] <= 1
    best = json.loads(r.stdout)["best"]
    assert best["value"] == max(t["value"] for t in trials)  # an accuracy is maximised by default
