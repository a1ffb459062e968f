"""`llmforge sweep` on a tiny llama and a learnable token stream: real pretrain runs as trials, an Optuna study
in SQLite. The search finds a learning rate far better than the worst; a pruned trial stops early; a sweep
killed with SIGKILL resumes without repeating a trial (the cut-off one continues from its checkpoint); the
W&B offline runs carry the sweep and trial ids; bad spaces, keys, metrics and storages exit 2 first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from pretrain_tokens import markov_tokens, write_recipe

from llmforge.console import UserError
from llmforge.sweep.space import read_space

pytestmark = pytest.mark.slow
TRAIN = {"max_steps": 40, "eval_every": 10, "checkpoint_every": 20, "log_every": 5, "keep_last": 1}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return markov_tokens(tmp_path_factory.mktemp("sweep") / "tokens")


def _recipe(tmp_path: Path, tokens: Path, **train) -> Path:
    return write_recipe(
        tmp_path / "r.toml", tmp_path / "runs", train={**TRAIN, "tokens": str(tokens), **train}
    )


def _space(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _results(out: Path) -> dict:
    return json.loads((out / "report" / "results.json").read_text())


LR_GRID = """
sampler = "grid"
pruner = "none"
trials = 3
[space]
"train.lr" = { type = "log-float", values = [1e-5, 1e-3, 3e-2] }
"""


def test_the_search_finds_a_learning_rate_far_better_than_the_worst(tmp_path, tokens, cli):
    out = tmp_path / "sweep"
    r = cli("sweep", str(_recipe(tmp_path, tokens, report_to="wandb")), "--space", str(_space(tmp_path, LR_GRID)),
            "--out", str(out), "--study", "lr", "--scale-to", "2e6", "--json",
            env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    results = _results(out)
    values = {t["params"]["train.lr"]: t["value"] for t in results["trials"] if t["state"] == "complete"}
    assert sorted(values) == [1e-5, 1e-3, 3e-2]
    assert summary["best"]["params"] == {"train.lr": 3e-2}
    assert max(values.values()) - min(values.values()) > 0.5  # by a margin, in nats
    for t in results["trials"]:  # each trial's value is its own run's final val loss
        run = json.loads((Path(t["run_dir"]) / "result.json").read_text())
        assert t["value"] == run["final_val_loss"] and run["steps"] == TRAIN["max_steps"]
    for png in ("history.png", "curves.png"):
        assert (out / "report" / png).stat().st_size > 5000
    manifest = json.loads((out / "report" / "manifest.json").read_text())
    assert len(manifest["inputs"]) == 3 and all(i["kind"] == "report" for i in manifest["inputs"])
    # the best recipe is a runnable recipe with the best value; the extrapolation says what it is
    from llmforge.recipe import load_recipe

    best = load_recipe(out / "best.toml")
    assert best.train.lr == 3e-2 and best.run.name == "lr-best" and best.train.tokens == str(tokens)
    scaled = (out / "scaled.toml").read_text()
    assert scaled.startswith("# EXTRAPOLATION") and summary["scaled"]["extrapolation"] is True
    assert summary["scaled"]["lr"]["target"] < 3e-2  # a bigger model trains with a smaller rate
    # W&B offline: each trial's run carries the sweep's and the trial's ids
    from wandb_log import read_run

    (log,) = (Path(values and results["trials"][0]["run_dir"]) / "trackers" / "wandb").glob(
        "offline-run-*/run-*.wandb"
    )
    run = read_run(log)
    assert run["tags"] == ["sweep-lr", "trial-0"] and run["group"] == "sweep-lr"
    assert [h["_step"] for h in run["history"] if "val_loss" in h] == [10, 20, 30, 40]


def test_a_trial_worse_than_the_median_is_pruned_early(tmp_path, tokens, cli):
    """Two good settings first (`first`), then a learning rate of 1e-6: stopped at an early eval step."""
    recipe = _recipe(tmp_path, tokens, max_steps=120, eval_every=5, checkpoint_every=60)
    space = _space(
        tmp_path,
        """trials = 3
pruner = "median"
first = [{ "train.lr" = 1e-2 }, { "train.lr" = 3e-2 }, { "train.lr" = 1e-6 }]
[space]
"train.lr" = { type = "log-float", low = 1e-6, high = 3e-2 }
""",
    )
    r = cli("sweep", str(recipe), "--space", str(space), "--out", str(tmp_path / "sweep"), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _results(tmp_path / "sweep")["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete", "pruned"]
    pruned = trials[2]
    assert pruned["steps"] < 120 and pruned["params"] == {"train.lr": 1e-6}
    metrics = (Path(pruned["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] < 120  # the run itself stopped, not only the study's record
    # the same study with another space is refused: its trials would not compare
    other = _space(
        tmp_path, '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n', "other.toml"
    )
    r = cli(
        "sweep", str(recipe), "--space", str(other), "--out", str(tmp_path / "sweep"), "--study", "t-space"
    )
    assert r.returncode == 2 and "another space" in r.stderr, r.stderr[-2000:]


def _pretrain_children(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and "pretrain" in cmd:
                pids.append(int(proc.name))
    return pids


def test_a_killed_sweep_resumes_without_repeating_a_trial(tmp_path, tokens, cli):
    recipe = _recipe(tmp_path, tokens, max_steps=300, eval_every=50, checkpoint_every=20)
    space = _space(tmp_path, LR_GRID)
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "llmforge", "sweep", str(recipe), "--space", str(space), "--out", str(out)]
    with (tmp_path / "first.log").open("w") as log:
        sweep = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    second = out / "trials" / "trial-0001" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (second.is_file() and second.read_text().count("\n") >= 4):
        assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[
            -3000:
        ]
        time.sleep(0.2)
    sweep.send_signal(signal.SIGKILL)  # no chance to clean up: the study says trial 1 is RUNNING
    sweep.wait()
    deadline = time.monotonic() + 120
    while _pretrain_children(str(out)):  # its child got SIGTERM from the kernel: it saves and stops
        assert time.monotonic() < deadline
        time.sleep(0.2)
    first_log = (out / "trials" / "trial-0000" / "log.txt").read_text()

    r = cli("sweep", str(recipe), "--space", str(space), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _results(out)["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert sorted(t["params"]["train.lr"] for t in complete) == [1e-5, 1e-3, 3e-2]  # each value once
    assert (out / "trials" / "trial-0000" / "log.txt").read_text() == first_log  # trial 0 was not run again
    continued = [t for t in trials if t["continues"] == 1]
    assert len(continued) == 1 and continued[0]["run_dir"].endswith("trial-0001")
    log = (out / "trials" / "trial-0001" / "log.txt").read_text()
    assert (
        log.count("\n$ ") == 2 and "resum" in log.lower()
    )  # started twice, the second time from a checkpoint
    # trial 2 continued trial 1 in its folder; trial 3 took the last grid point
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000", "trial-0001", "trial-0003"]
    assert [t["state"] for t in trials] == ["complete", "failed", "complete", "complete"]


def test_two_workers_share_one_study_and_its_budget(tmp_path, tokens):
    """Two sweep processes started at once on one SQLite study: 4 trials in all, none drawn twice, each in
    its own run directory, both workers used, and the study ends at its budget (not 4 each)."""
    recipe = _recipe(tmp_path, tokens, max_steps=20, eval_every=10, checkpoint_every=20)
    space = _space(
        tmp_path,
        'sampler = "random"\npruner = "none"\ntrials = 4\n[space]\n"train.lr" = { type = "log-float", low = 1e-4, high = 3e-2 }\n',
    )
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "llmforge", "sweep", str(recipe), "--space", str(space), "--out", str(out),
            "--storage", f"sqlite:///{tmp_path / 'shared.db'}", "--study", "shared"]  # fmt: skip
    workers = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"w{i}.log").open("w"))
        for i in range(2)
    ]
    for i, w in enumerate(workers):
        assert w.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 4 <= len(complete) <= 5  # a worker may start one more trial while the other finishes the 4th
    lrs = [t.params["train.lr"] for t in complete]
    assert len(set(lrs)) == len(lrs)
    assert len({t.user_attrs["run_dir"] for t in complete}) == len(complete)
    assert len({t.user_attrs["owner"]["pid"] for t in complete}) == 2
    for t in complete:
        run = json.loads((Path(t.user_attrs["run_dir"]) / "result.json").read_text())
        assert t.value == run["final_val_loss"]


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("[space]\n", "empty or missing"),
        ("trials = 3\n", "empty or missing"),
        ("[space\n", "not valid TOML"),
        ('[space]\n"train.lr" = 3\n', "expected a table"),
        ('[space]\n"train.lr" = { type = "gaussian", low = 1, high = 2 }\n', "type = 'gaussian'"),
        ('[space]\n"train.lr" = { type = "float", low = 2, high = 1 }\n', "must be below high"),
        ('[space]\n"train.lr" = { type = "log-float", low = 0, high = 1 }\n', "must be > 0"),
        ('[space]\n"train.lr" = { type = "int", low = 1.5, high = 4 }\n', "an integer"),
        ('[space]\n"train.lr" = { type = "categorical", choices = [] }\n', "non-empty list of choices"),
        (
            '[space]\n"train.lr" = { type = "float", low = 1, high = 2, colour = 1 }\n',
            "unknown field 'colour'",
        ),
        (
            'sampler = "grid"\n[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n',
            "a grid needs points",
        ),
        (
            'metric = "loss"\n[space]\n"train.lr" = { type = "float", low = 1, high = 2 }\n',
            "expected 'val_loss'",
        ),
        (
            'metric = "eval:piqa"\npruner = "median"\n[space]\n"train.lr" = { type = "float", low = 1, high = 2 }\n',
            "pruner = 'none'",
        ),
        ('budget = 3\n[space]\n"train.lr" = { type = "float", low = 1, high = 2 }\n', "unknown key 'budget'"),
        ('trials = 0\n[space]\n"train.lr" = { type = "float", low = 1, high = 2 }\n', "expected ≥ 1"),
    ],
)
def test_a_malformed_space_is_refused(tmp_path, text, phrase):
    with pytest.raises(UserError, match=None) as e:
        read_space(_space(tmp_path, text))
    assert phrase in str(e.value), str(e.value)


def test_grid_points_and_defaults(tmp_path):
    spec = read_space(
        _space(
            tmp_path,
            """sampler = "grid"
[space]
"train.warmup_steps" = { type = "int", low = 0, high = 20, step = 10 }
"model.arch" = { type = "categorical", choices = ["llama", "gpt-neox"] }
"train.lr" = { type = "float", low = 0.01, high = 0.03, step = 0.01 }
""",
        )
    )
    assert spec.grid() == {"train.warmup_steps": [0, 10, 20], "model.arch": ["llama", "gpt-neox"],
                           "train.lr": pytest.approx([0.01, 0.02, 0.03])}  # fmt: skip
    assert (spec.metric.name, spec.direction, spec.pruner) == ("val_loss", "minimize", "median")
    on_eval = read_space(
        _space(
            tmp_path,
            'metric = "eval:piqa.acc_norm"\n[space]\n"train.lr" = { type = "float", low = 1, high = 2 }\n',
        )
    )
    assert (on_eval.metric.task, on_eval.metric.measure, on_eval.direction, on_eval.pruner) == (
        "piqa", "acc_norm", "maximize", "none")  # fmt: skip


@pytest.mark.parametrize(
    "space, extra, phrase",
    [
        ('[space]\n"train.nope" = { type = "float", low = 1, high = 2 }\n', [], "nope"),
        ('[space]\n"train.lr" = { type = "float", low = -1, high = 2 }\n', [], "train.lr"),
        (
            '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
            ["--storage", "nosuchdb://x/y"],
            "cannot open the study database",
        ),
        (
            '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
            ["--stage", "rlhf"],
            "--stage",
        ),
        (
            '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
            ["--study", "a/b"],
            "--study",
        ),
        (
            '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
            ["--scale-to", "many"],
            "--scale-to",
        ),
        (
            '[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
            ["--tokens", "/nonexistent"],
            "/nonexistent",
        ),
    ],
)
def test_bad_sweeps_exit_2_before_any_trial(tmp_path, tokens, cli, space, extra, phrase):
    out = tmp_path / "sweep"
    r = cli("sweep", str(_recipe(tmp_path, tokens)), "--space", str(_space(tmp_path, space)), "--out", str(out),
            *extra)  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert phrase in r.stderr and "Traceback" not in r.stderr
    assert not (out / "trials").exists() or not any(
        p.name.startswith("trial-") for p in (out / "trials").iterdir()
    )


def test_an_eval_metric_on_a_task_the_stage_cannot_run_is_refused(tmp_path, tokens, cli):
    recipe = _recipe(tmp_path, tokens)
    with recipe.open("a") as f:
        f.write(f'\n[eval]\ndata_dir = "{tmp_path}"\n')
    space = _space(
        tmp_path,
        'metric = "eval:nosuchtask"\n[space]\n"train.lr" = { type = "float", low = 1e-3, high = 1e-2 }\n',
    )
    r = cli("sweep", str(recipe), "--space", str(space), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "not an offline task" in r.stderr, r.stderr[-2000:]


def test_scale_to_follows_the_published_exponents(tmp_path, tokens):
    """lr × (C_t/C_p)^−0.125 and batch × (C_t/C_p)^0.3271 (DeepSeek LLM), on the shape plan proposes."""
    from llmforge.plan.shapes import flops_per_token, param_counts, propose_shapes
    from llmforge.recipe import load_recipe
    from llmforge.sweep.transfer import scale_recipe

    best = _recipe(tmp_path, tokens, lr=0.02, global_batch_tokens=1024, micro_batch=4)
    results = {"flops_per_token": 1.0e5, "tokens_seen": 1.0e6}
    text, derived = scale_recipe(best, results, 5e6, "scaled")
    shape = propose_shapes(5e6, arch="llama", vocab_size=64, seq_len=32)[0]
    ratio = flops_per_token(shape)["train"] * 20 * param_counts(shape)["total"] / 1e11
    assert derived["compute_ratio"] == pytest.approx(ratio)
    assert derived["lr"]["target"] == pytest.approx(0.02 * ratio**-0.125)
    assert derived["global_batch_tokens"]["target"] % (32 * 4) == 0
    assert derived["global_batch_tokens"]["target"] == pytest.approx(1024 * ratio**0.3271, rel=0.1)
    path = tmp_path / "scaled.toml"
    path.write_text(text)
    scaled = load_recipe(path)
    assert scaled.model.d_model == shape.d_model and scaled.train.lr == pytest.approx(derived["lr"]["target"])


def test_reclaim_requeues_a_trial_whose_process_is_gone(tmp_path):
    """The bookkeeping behind resume, without runs: a RUNNING trial of a dead pid is failed and queued again
    with its params; one of a live process (another worker) is left alone."""
    import optuna

    from llmforge.sweep.study import open_storage, reclaim_orphans

    storage = open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = optuna.create_study(storage=storage, study_name="s")
    import socket

    for pid in (2**22 + 12345, os.getpid()):  # a pid beyond pid_max is never alive
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        t.set_user_attr("owner", {"host": socket.gethostname(), "pid": pid})
    assert reclaim_orphans(study) == [0]
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "WAITING"]
    assert trials[2].params == trials[0].params and trials[2].system_attrs["retry_history"] == [0]
    assert reclaim_orphans(study) == []  # already queued: not twice


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_second_worker_or_a_resumed_sweep_draws_new_settings(tmp_path, sampler):
    """Processes on one study must not replay each other's seeded draws; the same study again draws the same."""
    from llmforge.sweep.study import open_storage, open_study

    spec = read_space(
        _space(
            tmp_path,
            f'sampler = "{sampler}"\n[space]\n"train.lr" = {{ type = "float", low = 0, high = 1 }}\n',
        )
    )

    def draws(name: str) -> list[float]:
        url = f"sqlite:///{tmp_path / name}"
        first, second = open_study(open_storage(url), "s", spec), open_study(open_storage(url), "s", spec)
        drawn = []
        for study in (first, second, first, second):  # two workers, opened at once, taking turns
            t = study.ask()
            drawn.append(t.suggest_float("train.lr", 0, 1))
            study.tell(t, drawn[-1])
        again = open_study(open_storage(url), "s", spec)  # as a rerun (resume) opens it
        t = again.ask()
        return drawn + [t.suggest_float("train.lr", 0, 1)]

    drawn = draws("a.db")
    assert len(set(drawn)) == len(drawn)
    assert draws("b.db") == drawn  # seeded: a sweep reproduces
