"""`llmforge eval run`: offline tasks through lm-eval, matching lm-eval's own CLI; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from eval_tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, shared_data):
    return build_tiny_model(
        tmp_path_factory.mktemp("eval") / "model", shared_data / "tinyshakespeare" / "input.txt"
    )


@pytest.mark.slow
def test_offline_piqa_matches_lm_eval_cli(cli, model_dir, shared_data, tmp_path):
    args = ["--limit", "12", "--batch-size", "4"]
    ours = cli(
        "eval",
        "run",
        str(model_dir),
        "--tasks",
        "piqa",
        "--data-dir",
        str(shared_data),
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "report"),
        "--json",
        *args,
    )
    assert ours.returncode == 0, ours.stderr
    printed = json.loads(ours.stdout)["results"]["piqa"]

    include = tmp_path / "tasks"
    assert cli("eval", "tasks", "--data-dir", str(shared_data), "--export", str(include)).returncode == 0
    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir}",
            "--tasks",
            "piqa",
            "--include_path",
            str(include),
            "--device",
            "cpu",
            "--num_fewshot",
            "0",
            "--output_path",
            str(tmp_path / "lm_eval_out"),
            "--batch_size",
            "4",
            "--limit",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    (their_file,) = (tmp_path / "lm_eval_out").rglob("results_*.json")
    reference = json.loads(their_file.read_text())["results"]["piqa"]

    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    for key in ("acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"):
        assert saved["results"]["piqa"][key] == reference[key] == printed[key], key
    assert saved["n-samples"]["piqa"]["effective"] == 12
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["kind"] == "report"
    assert "| piqa | acc |" in (tmp_path / "report" / "report.md").read_text()


def test_rolling_and_generation_tasks_run_offline(cli, model_dir, shared_data, tmp_path):
    r = cli(
        "eval",
        "run",
        str(model_dir),
        "--tasks",
        "wikitext,gsm8k,truthfulqa_mc2",
        "--limit",
        "2",
        "--data-dir",
        str(shared_data),
        "--max-gen-toks",
        "8",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "r"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert results["wikitext"]["word_perplexity,none"] > results["wikitext"]["byte_perplexity,none"] > 1
    assert 0.0 <= results["gsm8k"]["exact_match,strict-match"] <= 1.0
    assert 0.0 < results["truthfulqa_mc2"]["acc,none"] < 1.0  # probability mass on the true answers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "piqq"], "did you mean: piqa"),
        (["--tasks", "hellaswag"], "hellaswag/hellaswag_val.jsonl: missing data file"),
        (["--tasks", "piqa", "--num-fewshot", "500"], "has only 199 few-shot examples"),
    ],
)
def test_bad_task_input_exits_2(cli, model_dir, shared_data, args, message):
    r = cli("eval", "run", str(model_dir), "--data-dir", str(shared_data), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_checkpoint_that_does_not_load_exits_2(cli, tmp_path, shared_data):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    r = cli("eval", "run", str(broken), "--tasks", "piqa", "--data-dir", str(shared_data))
    assert r.returncode == 2
    assert "does not load" in r.stderr


def test_offline_without_data_dir_exits_2(cli, model_dir):
    r = cli("eval", "run", str(model_dir), "--tasks", "piqa", env={"HF_DATASETS_OFFLINE": "1"})
    assert r.returncode == 2
    assert "--data-dir" in r.stderr


def test_generation_budget_beyond_the_context_exits_2(cli, tmp_path, shared_data):
    short = build_tiny_model(tmp_path / "short", shared_data / "tinyshakespeare" / "input.txt", context=128)
    r = cli("eval", "run", str(short), "--tasks", "gsm8k", "--limit", "1", "--data-dir", str(shared_data))
    assert r.returncode == 2, r.stderr
    assert "context 128 tokens" in r.stderr and "--max-gen-toks" in r.stderr


def test_recipe_eval_table_gives_the_defaults(cli, model_dir, shared_data, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[run]\nname = "t"\n\n[eval]\ntasks = ["piqa"]\nlimit = 3\ndata_dir = "{shared_data}"\n'
    )
    r = cli(
        "eval",
        "run",
        str(model_dir),
        "--recipe",
        str(recipe),
        "--set",
        "eval.batch_size=2",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "rep"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["n-samples"]["piqa"]["effective"] == 3
    assert saved["llmforge"]["batch_size"] == 2


def test_quiet_silences_the_harness_progress_bars(cli, model_dir, shared_data, tmp_path):
    args = [
        "eval",
        "run",
        str(model_dir),
        "--tasks",
        "piqa,wikitext",
        "--limit",
        "2",
        "--data-dir",
        str(shared_data),
    ]
    quiet = cli("--quiet", *args, "--out", str(tmp_path / "q"), "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert "it/s" not in quiet.stderr and "Running loglikelihood" not in quiet.stderr
    assert json.loads(quiet.stdout)["results"]["wikitext"]["bits_per_byte,none"] > 0
    loud = cli(*args, "--out", str(tmp_path / "l"))
    assert loud.returncode == 0 and "Running loglikelihood" in loud.stderr  # bars stay without --quiet
