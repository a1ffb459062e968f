"""`llmforge plan …` end to end in a subprocess: JSON contracts, no torch, bad input → exit 2 in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from llmforge.recipe import tomllib  # tomllib, or tomli on Python 3.10

REPO = Path(__file__).resolve().parents[1]


def _json(cli, *args):
    result = cli("plan", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compute_json(cli):
    out = _json(cli, "--compute", "1e21", "--json")
    assert {"method", "params", "tokens", "flops", "tokens_per_param", "loss"} <= set(out)
    assert out["method"] == "chinchilla" and out["flops"] == 1e21
    assert 6 * out["params"] * out["tokens"] == pytest.approx(1e21)
    assert set(out["methods"]) == {
        "chinchilla",
        "approach2",
        "approach3",
        "epoch",
        "kaplan",
        "tokens-per-param",
    }
    assert out["methods"]["approach3"]["loss"] > 1.69


def test_params_with_inference_and_cost(cli):
    out = _json(
        cli,
        "--params",
        "400M",
        "--inference-tokens",
        "1T",
        "--gpu",
        "h100-sxm",
        "--gpus",
        "8",
        "--price",
        "2",
        "--json",
    )
    assert f"{out['flops']:.3g}" == "1.92e+19"
    assert out["inference_aware"]["params"] < out["params"]
    cost = out["cost"]
    assert cost["days"] == pytest.approx(out["flops"] / (8 * 989.4e12 * 0.4) / 86400)
    assert cost["cost_usd"] == pytest.approx(cost["gpu_hours"] * 2)


def test_human_output_lists_every_method(cli):
    result = cli("plan", "--compute", "1e21")
    assert result.returncode == 0
    for method in ("chinchilla", "approach2", "approach3", "epoch", "kaplan", "tokens-per-param"):
        assert method in result.stdout  # results on stdout (progress and logs on stderr)


def test_plan_cli_does_not_import_torch():
    code = (
        "import sys\nfrom llmforge.cli import main\n"
        "try:\n    main(['plan', '--compute', '1e21', '--json'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compute", "-1"], "--compute -1: expected a finite number > 0"),
        (["--compute", "0"], "expected a finite number > 0"),
        (["--compute", "nan"], "finite"),
        (["--params", "lots"], "not a number"),
        (["--compute", "1e21", "--params", "70B"], "disagree"),
        (["--compute", "1e21", "--method", "magic"], "choose one of chinchilla, approach2"),
        (["--compute", "1e21", "--gpu", "tpu-v9"], "choose one of a100-40gb"),
        (["--compute", "1e21", "--gpu", "h100-sxm", "--gpus", "abc"], "--gpus abc: not a number"),
        (["--compute", "1e21", "--gpu", "h100-sxm", "--gpus", "2.5"], "expected a positive integer"),
        (["--compute", "1e21", "--gpu", "h100-sxm", "--mfu", "1.5"], "expected a fraction"),
        (["memory", "--params", "7B", "--zero", "4"], "choose one of 0, 1, 2, 3"),
        (["--compute", "1e21", "--price", "2"], "need --gpu NAME or --peak-tflops"),
        (["--compute", "1e21", "memory", "--params", "7B"], "put its options after the subcommand"),
        (
            ["shape", "--arch", "rnn", "--layers", "2", "--d-model", "64", "--heads", "2"],
            "choose one of gpt2",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, message):
    result = cli("plan", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_agreeing_compute_and_params_are_accepted(cli):
    out = _json(cli, "--compute", "1.92e19", "--params", "400M", "--json")
    assert out["params"] == pytest.approx(4e8, rel=0.01)


def test_memory_json(cli):
    out = _json(
        cli,
        "memory",
        "--params",
        "7.5e9",
        "--gpus",
        "64",
        "--zero",
        "2",
        "--gpu",
        "a100-40gb",
        "--checkpointing",
        "full",
        "--json",
    )
    assert round(out["model_states_bytes"] / 1e9, 1) == 16.6
    assert out["total_bytes"] == out["model_states_bytes"] + out["activation_bytes"] + out["logits_bytes"]
    assert out["logits_bytes"] == 3 * 4 * 2048 * 1 * out["shape"]["vocab"]  # the proposed shape's vocabulary
    assert out["fits"] is True and out["shape"]["source"] == "proposed for --params"
    without = _json(
        cli, "memory", "--params", "7.5e9", "--gpus", "64", "--zero", "2", "--gpu", "a100-40gb", "--json"
    )
    assert without["activation_bytes"] > 10 * out["activation_bytes"] and without["fits"] is False


def test_shape_json(cli):
    out = _json(
        cli,
        "shape",
        "--arch",
        "llama",
        "--layers",
        "32",
        "--d-model",
        "4096",
        "--heads",
        "32",
        "--vocab",
        "32000",
        "--json",
    )
    assert out["params"] == 6_738_415_616
    proposals = _json(cli, "shape", "--params", "1e9", "--count", "3", "--json")["shapes"]
    assert len(proposals) == 3


def test_parallel_writes_accelerate_config(cli, tmp_path):
    path = tmp_path / "acc.yaml"
    out = _json(
        cli,
        "parallel",
        "--params",
        "1B",
        "--gpus",
        "8",
        "--gpu",
        "h100-sxm",
        "--write-accelerate-config",
        str(path),
        "--json",
    )
    assert out["strategy"] == "DDP" and out["accelerate_config"] == str(path)
    assert "distributed_type: MULTI_GPU" in path.read_text()


def test_ladder_recipes_pass_recipe_check(cli, tmp_path):
    out = _json(
        cli,
        "ladder",
        "--budgets",
        "1e13,3e13",
        "--sizes",
        "3",
        "--base",
        "recipes/tiny.toml",
        "--out",
        str(tmp_path / "ladder"),
        "--json",
    )
    rungs = out["rungs"]
    assert len(rungs) >= 4 and {r["budget"] for r in rungs} == {1e13, 3e13}
    for rung in rungs:
        assert rung["flops"] == pytest.approx(rung["budget"], rel=0.05)
        check = cli("recipe", "check", str(tmp_path / "ladder" / rung["recipe"]))
        assert check.returncode == 0, check.stderr
    manifest = json.loads((tmp_path / "ladder" / "manifest.json").read_text())
    assert manifest["kind"] == "report"
    shown = json.loads(cli("recipe", "show", str(tmp_path / "ladder" / rungs[0]["recipe"]), "--json").stdout)
    assert (
        shown["model"]["n_layers"] == rungs[0]["n_layers"]
        and shown["train"]["max_steps"] == rungs[0]["steps"]
    )


def test_frontier_with_our_run(cli, tmp_path):
    results = tmp_path / "ours" / "reports" / "pretrain"
    results.mkdir(parents=True)
    (results / "results.json").write_text(
        json.dumps({"params": 7e6, "tokens_seen": 5e5, "final_val_loss": 5.1})
    )
    out = _json(cli, "frontier", "--run", str(tmp_path / "ours"), "--png", str(tmp_path / "f.png"), "--json")
    rows = {r["name"]: r for r in out["models"]}
    assert rows["Chinchilla"]["verdict"] == "near-optimal"
    assert rows["GPT-3"]["verdict"] == "under-trained"
    assert rows["Llama-3-8B"]["verdict"] == "over-trained"
    assert rows["ours"]["ours"] and rows["ours"]["verdict"] == "under-trained"
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_recipe_plan_table_supplies_defaults(cli, tmp_path):
    recipe = tmp_path / "r.toml"
    base = tomllib.loads((REPO / "recipes" / "tiny.toml").read_text())
    base["plan"] = {
        "method": "epoch",
        "gpu": "a100-80gb",
        "gpus": 4,
        "ladder_budgets": [1e15],
        "ladder_sizes": 2,
    }
    recipe.write_text(tomli_w.dumps(base))
    out = _json(cli, "--compute", "1e20", "--recipe", str(recipe), "--json")
    assert out["method"] == "epoch" and out["cost"]["gpus"] == 4 and out["cost"]["gpu"] == "a100-80gb"
    ladder = _json(cli, "ladder", "--base", str(recipe), "--out", str(tmp_path / "ladder"), "--json")
    assert ladder["budgets"] == [1e15] and len(ladder["rungs"]) == 2
