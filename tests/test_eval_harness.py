"""`llmforge eval run`: offline tasks through lm-eval, matching lm-eval's own CLI; bad input exits 2."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
from eval_tiny_model import build_tiny_model

from llmforge.eval import harness


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
    assert 0.0 < results["truthfulqa_mc2"]["acc,none"] < 1.0  # probability mass on the true answers
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert (
        saved["configs"]["gsm8k"]["generation_kwargs"]["max_gen_toks"] == 8
    )  # --max-gen-toks reached lm-eval
    assert {t: saved["n-samples"][t]["effective"] for t in ("wikitext", "gsm8k", "truthfulqa_mc2")} == {
        "wikitext": 2,
        "gsm8k": 2,
        "truthfulqa_mc2": 2,
    }


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


def test_quiet_silences_the_harness_bars_warnings_and_git(cli, model_dir, shared_data, tmp_path):
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
    quiet = cli("--quiet", *args, "--out", str(tmp_path / "q"), "--json", cwd=tmp_path)  # not a git checkout
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no bars, no harness warnings, no "fatal: not a git repository"
    assert json.loads(quiet.stdout)["results"]["wikitext"]["bits_per_byte,none"] > 0
    loud = cli(*args, "--out", str(tmp_path / "l"))
    assert loud.returncode == 0 and "Running loglikelihood" in loud.stderr  # bars stay without --quiet


def test_rolling_loglikelihood_scores_the_first_token_after_eos(tmp_path, shared_data):
    """Training separates documents by EOS, so a document's first token is scored after EOS even when the
    tokenizer declares a BOS of its own (which the model never saw)."""
    import torch
    from lm_eval.api.instance import Instance

    from llmforge.eval.checkpoint import load

    model_dir = build_tiny_model(
        tmp_path / "bos", shared_data / "tinyshakespeare" / "input.txt", context=64, bos_token="<|bos|>"
    )
    model, tokenizer = load(model_dir, "cpu")
    assert tokenizer.bos_token_id != tokenizer.eos_token_id
    text = "To be, or not to be"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        x = torch.tensor([tokenizer.eos_token_id, *ids])[None]
        logp = torch.log_softmax(model(x).logits[0, :-1].double(), -1)
    after_eos = float(logp.gather(-1, x[0, 1:, None]).sum())

    lm = harness.make_lm(model, tokenizer, batch_size=1)
    request = Instance("loglikelihood_rolling", doc={}, arguments=(text,), idx=0, metadata=("t", 0, 1))
    (scored,) = lm.loglikelihood_rolling([request], disable_tqdm=True)
    assert lm.prefix_token_id == tokenizer.eos_token_id
    assert scored == pytest.approx(after_eos, rel=1e-5)


class _FakeLM:
    """What ContextFit needs of HFLM: max_length and the two log-likelihood methods."""

    max_length = 8

    def __init__(self):
        self.seen = []

    def loglikelihood(self, requests, disable_tqdm=False):
        return self._loglikelihood_tokens(
            [(r.args, list(range(100, 100 + r.n_context)), list(range(r.n_answer))) for r in requests]
        )

    def _loglikelihood_tokens(self, requests, disable_tqdm=False):
        self.seen += requests
        return [(0.0, True)] * len(requests)


def _request(task, doc, n_context, n_answer):
    return SimpleNamespace(
        args=(f"ctx{doc}", f"ans{doc}"), task_name=task, doc_id=doc, n_context=n_context, n_answer=n_answer
    )


def test_an_item_longer_than_the_context_is_truncated_from_the_left_and_counted():
    lm = _FakeLM()
    fit = harness.ContextFit(lm)
    lm.loglikelihood([_request("piqa", 0, 3, 2), _request("piqa", 1, 20, 3), _request("piqa", 2, 4, 12)])
    fits, long_context, long_answer = lm.seen
    assert fits[1:] == ([100, 101, 102], [0, 1])  # untouched
    assert long_context[1:] == ([114, 115, 116, 117, 118, 119], [0, 1, 2])  # oldest context tokens dropped
    assert long_answer[1:] == ([3], [4, 5, 6, 7, 8, 9, 10, 11])  # the answer's last 8 tokens, 1 token before
    for _, context, answer in lm.seen:
        assert len(context) + len(answer) <= lm.max_length + 1 and answer
    assert fit.summary() == {"piqa": {"max_length": 8, "contexts": 1, "answers": 1}}
    line = harness.truncation_line(fit.summary())
    assert line.endswith(
        "8-token context, truncated from the left: piqa 1 with the context cut, "
        "1 with an answer scored on its last 8 tokens"
    )


def _piqa_dir(path, rows):
    (path / "piqa").mkdir(parents=True)
    (path / "piqa" / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "piqa" / "valid-labels.lst").write_text("".join(f"{i % 2}\n" for i in range(len(rows))))
    return path


def test_eval_run_keeps_every_result_when_an_item_exceeds_the_context(cli, tmp_path, shared_data):
    short = build_tiny_model(tmp_path / "short", shared_data / "tinyshakespeare" / "input.txt", context=64)
    long = " ".join(["a very long way round the garden"] * 30)
    rows = [
        {"goal": "Boil water", "sol1": "use a kettle", "sol2": "use a fridge"},
        {"goal": "Open a jar", "sol1": "twist the lid", "sol2": long},  # answer > 64 tokens
        {"goal": long, "sol1": "yes", "sol2": "no"},  # context > 64 tokens
    ]
    data = _piqa_dir(tmp_path / "data", rows)
    args = ["eval", "run", str(short), "--tasks", "piqa", "--data-dir", str(data), "--device", "cpu"]
    r = cli(*args, "--out", str(tmp_path / "rep"), "--json")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["n-samples"]["piqa"]["effective"] == 3
    assert math.isfinite(saved["results"]["piqa"]["acc,none"])
    assert saved["llmforge"]["truncated"] == {"piqa": {"max_length": 64, "contexts": 1, "answers": 1}}
    assert "truncated from the left: piqa 1 with the context cut, 1 with an answer" in r.stderr
    assert "Combined length" not in r.stderr

    again = cli(*args, "--out", str(tmp_path / "rep"))
    assert again.returncode == 2 and "a report already exists; pass --force" in again.stderr


def test_bad_piqa_row_names_the_file_row_and_field(cli, model_dir, tmp_path):
    data = _piqa_dir(tmp_path / "data", [{"goal": "g", "sol1": "a", "sol2": "b"}, {"goal": "g", "sol1": "a"}])
    r = cli("eval", "run", str(model_dir), "--tasks", "piqa", "--data-dir", str(data))
    assert r.returncode == 2, r.stderr
    assert f"{data / 'piqa' / 'valid.jsonl'}:2: the row lacks the field 'sol2'" in r.stderr


def test_damaged_weights_exit_2_before_the_harness_runs(cli, model_dir, shared_data, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    r = cli("eval", "run", str(copy), "--tasks", "piqa", "--data-dir", str(shared_data))
    assert r.returncode == 2, r.stderr
    assert f"{weights}: damaged safetensors file" in r.stderr


def test_log_samples_writes_per_item_records_whose_mean_is_the_reported_score(
    cli, model_dir, shared_data, tmp_path
):
    out = tmp_path / "report"
    args = ["--tasks", "piqa", "--limit", "8", "--data-dir", str(shared_data), "--out", str(out)]
    r = cli("eval", "run", str(model_dir), *args, "--log-samples")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (out / "samples_piqa.jsonl").read_text().splitlines()]
    assert sorted(row["doc_id"] for row in rows) == list(range(8))
    acc = json.loads((out / "results.json").read_text())["results"]["piqa"]["acc,none"]
    assert sum(row["acc"] for row in rows) / 8 == pytest.approx(acc)
    assert "samples" not in json.loads((out / "results.json").read_text())
