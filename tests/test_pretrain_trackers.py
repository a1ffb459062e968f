"""Trackers through Accelerate: TensorBoard really logs; a tracker whose package is missing is a user error."""

from __future__ import annotations

import importlib.util
import json

import pytest
from pretrain_tokens import markov_tokens, write_recipe

from llmforge.console import UserError
from llmforge.recipe import load_recipe


def test_tensorboard_event_files_hold_the_losses(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmforge.pretrain.run import run_pretraining

    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 6, "log_every": 2, "eval_every": 3, "report_to": "tensorboard"}
    run_pretraining(load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train=train)), tokens)

    logdir = tmp_path / "t" / "trackers" / "t"  # <run dir>/trackers/<run name>
    assert list(logdir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logdir))
    events.Reload()
    assert {"loss", "val_loss", "lr", "grad_norm", "tokens_per_s"} <= set(events.Tags()["scalars"])
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    logged = {e.step: e.value for e in events.Scalars("loss")}
    assert logged == pytest.approx({r["step"]: r["loss"] for r in rows})  # float32 in the event file
    assert sorted(logged) == [2, 3, 4, 6]  # log_every plus the eval steps
    assert [e.step for e in events.Scalars("val_loss")] == [3, 6]


def test_resumed_run_hides_what_tensorboard_logged_after_the_checkpoint(tmp_path):
    """Resumed at step 3 (with another LR, so steps 5–6 change): one value per step, the resumed run's."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmforge.pretrain.run import run_pretraining

    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 6, "checkpoint_every": 3, "eval_every": 3, "report_to": "tensorboard"}
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train=train)
    run_pretraining(load_recipe(recipe), tokens)
    shutil.rmtree(tmp_path / "t" / "checkpoints" / "step-000006")  # as if killed after step 5
    run_pretraining(load_recipe(recipe, ["train.lr=0.05"]), tokens)

    events = EventAccumulator(str(tmp_path / "t" / "trackers" / "t"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("loss")]
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in logged] == pytest.approx([r["loss"] for r in rows])


def test_tracker_config_is_flat_and_scalar():
    from llmforge.pretrain.metrics import tracker_config

    flat = tracker_config(
        {"train": {"lr": 0.1, "spike": {"sigma": 6.0}, "peak_flops": None}, "m": {"l": [1]}}
    )
    assert flat == {"train.lr": 0.1, "train.spike.sigma": 6.0, "m.l": "[1]"}


def test_missing_tracker_package_is_a_user_error(tmp_path, monkeypatch):
    from llmforge.pretrain import preflight as module

    tokens = markov_tokens(tmp_path / "tokens")
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train={"report_to": "wandb"}))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        module.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    with pytest.raises(UserError, match="`pip install wandb`"):
        module.preflight(recipe, tokens, resume=False, world_size=1, cuda=False)


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_cli_without_the_tracker_package_exits_2_and_writes_nothing(tmp_path, cli):
    tokens = markov_tokens(tmp_path / "tokens")
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"report_to": ["tensorboard", "mlflow"]})
    r = cli("pretrain", str(recipe), "--tokens", str(tokens))
    assert r.returncode == 2, r.stderr
    assert "pip install mlflow" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "t").exists()


def test_wandb_offline_run_holds_the_metrics_tags_and_group(tmp_path, monkeypatch):
    """W&B offline (no network) beside TensorBoard: the run's transaction log holds every metrics.jsonl loss
    at its step, the tags and the group (what a sweep sets: its id and the trial's)."""
    pytest.importorskip("wandb")
    from wandb_log import read_run

    from llmforge.pretrain.run import run_pretraining

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 6, "log_every": 2, "eval_every": 3, "report_to": ["tensorboard", "wandb"],
             "tracker_tags": ["sweep-lr", "trial-3"], "tracker_group": "sweep-lr"}  # fmt: skip
    run_pretraining(load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train=train)), tokens)

    (log,) = (tmp_path / "t" / "trackers" / "wandb").glob("offline-run-*/run-*.wandb")
    run = read_run(log)
    assert run["tags"] == ["sweep-lr", "trial-3"] and run["group"] == "sweep-lr" and run["name"] == "t"
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    logged = {h["_step"]: h["loss"] for h in run["history"]}
    assert logged == pytest.approx({r["step"]: r["loss"] for r in rows})
    assert [h["_step"] for h in run["history"] if "val_loss" in h] == [3, 6]
    assert list((tmp_path / "t" / "trackers" / "t").glob("events.out.tfevents.*"))  # TensorBoard too
