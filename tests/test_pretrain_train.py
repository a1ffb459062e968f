"""End-to-end pretraining on tiny data: learning, checkpoints, report, exact resume, signals, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pretrain_tokens import markov_tokens, shakespeare_bytes, write_recipe

from llmforge.artifacts import read_manifest
from llmforge.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def losses(run_dir: Path) -> dict[int, tuple[float, float | None]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r.get("val_loss")) for r in rows if "loss" in r}


def start(*args: str, quiet: bool = True) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmforge", *(["--quiet"] if quiet else []), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path} appeared: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


def test_loss_falls_well_below_unigram_entropy(tmp_path, shared_data):
    """Real text, byte-level: a 2-layer model must learn more than letter frequencies."""
    from llmforge.pretrain.run import run_pretraining

    tokens = shakespeare_bytes(shared_data, tmp_path / "tokens")
    recipe_file = write_recipe(
        tmp_path / "r.toml",
        tmp_path,
        model={"d_model": 64, "n_heads": 4, "max_seq_len": 64},
        train={
            "seq_len": 64,
            "global_batch_tokens": 1024,
            "max_steps": 200,
            "lr": 1e-2,
            "warmup_steps": 10,
            "eval_every": 100,
            "eval_tokens": 4096,
            "checkpoint_every": 100,
            "log_every": 1,
        },
    )
    result = run_pretraining(load_recipe(recipe_file), tokens).results
    curve = losses(tmp_path / "t")
    assert curve[1][0] > 5.0  # ≈ ln(257) at initialisation
    assert curve[100][1] > result["final_val_loss"]  # still falling at the end
    assert 3.0 < result["unigram_entropy"] < 3.5  # English bytes: ~3.3 nats
    assert result["final_val_loss"] < result["unigram_entropy"] - 0.5
    assert result["tokens_seen"] == 200 * 1024 and result["steps"] == 200


def test_run_writes_hf_checkpoints_report_and_snapshot(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from llmforge.pretrain.run import run_pretraining

    tokens = markov_tokens(tmp_path / "tokens")
    recipe_file = write_recipe(
        tmp_path / "r.toml", tmp_path, train={"checkpoint_every": 5, "keep_last": 2, "keep_every": 10}
    )
    result = run_pretraining(load_recipe(recipe_file), tokens)
    run = tmp_path / "t"
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-000010", "step-000020", "step-000025", "step-000030"]  # every 10th + last 2
    ckpt = run / "checkpoints" / "step-000030"
    manifest = read_manifest(ckpt)
    assert manifest["kind"] == "checkpoint"
    assert manifest["stats"]["step"] == 30 and manifest["stats"]["tokens_seen"] == 30 * 256
    assert manifest["stats"]["val_loss"] == pytest.approx(result.results["final_val_loss"])
    assert {"config.json", "model.safetensors", "generation_config.json"} <= {p.name for p in ckpt.iterdir()}
    assert {"optimizer.pt", "rng.pt", "state.json"} <= {p.name for p in (ckpt / "trainer_state").iterdir()}
    model = AutoModelForCausalLM.from_pretrained(ckpt)  # a standard HF model
    ids = torch.tensor([[1, 2, 3, 4]])
    assert model(ids).logits.shape == (1, 4, 64)

    results = json.loads((run / "reports" / "pretrain" / "results.json").read_text())
    for key in (
        "final_val_loss",
        "params",
        "non_embedding_params",
        "tokens_seen",
        "steps",
        "flops_per_token",
        "unigram_entropy",
        "tokens_per_s",
        "mfu",
    ):
        assert results[key] is not None, key
    assert results["final_val_loss"] < results["unigram_entropy"] - 1.0  # markov data: ln2 vs ~4
    assert read_manifest(run / "reports" / "pretrain")["kind"] == "report"
    assert (run / "reports" / "pretrain" / "loss.png").stat().st_size > 1000
    env = json.loads((run / "environment.json").read_text())
    assert "torch" in env["packages"] and env["argv"]
    assert load_recipe(run / "recipe.toml").train.max_steps == 30
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 31))
    assert {"tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem"} <= set(metrics[0])


@pytest.mark.slow
def test_sigkill_then_resume_gives_bit_identical_losses(tmp_path):
    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 150}
    whole = write_recipe(tmp_path / "a.toml", tmp_path, name="whole", train=train)
    killed = write_recipe(tmp_path / "b.toml", tmp_path, name="killed", train=train)

    proc = start("pretrain", str(killed), "--tokens", str(tokens))
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 13):  # past the step-10 checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "reports").exists()  # it really died mid-run

    resumed = start("pretrain", str(killed), "--tokens", str(tokens), "--resume")
    reference = start("pretrain", str(whole), "--tokens", str(tokens))
    assert resumed.wait() == 0, resumed.stderr.read()
    assert reference.wait() == 0, reference.stderr.read()
    a, b = losses(tmp_path / "whole"), losses(tmp_path / "killed")
    assert sorted(b) == list(range(1, 151))
    assert a == b  # every step's loss and val loss, bit for bit


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_writes_a_checkpoint_and_exits_128_plus_signal(tmp_path, signum):
    """SIGTERM (a scheduler's pre-emption) and SIGINT (Ctrl-C) both checkpoint, then exit 143 / 130."""
    tokens = markov_tokens(tmp_path / "tokens")
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 400, "checkpoint_every": 1000})
    proc = start("pretrain", str(recipe), "--tokens", str(tokens))
    metrics = tmp_path / "t" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signum)
    stderr = proc.communicate()[1]
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    saved = sorted((tmp_path / "t" / "checkpoints").iterdir())
    assert len(saved) == 1
    step = read_manifest(saved[0])["stats"]["step"]
    assert 3 <= step < 400 and max(losses(tmp_path / "t")) == step


def test_checkpoint_minutes_saves_by_time(tmp_path):
    """With checkpoint_every out of reach, a checkpoint interval shorter than a step saves after every step."""
    from llmforge.pretrain.run import run_pretraining

    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 4, "checkpoint_every": 1000, "checkpoint_minutes": 1e-6, "keep_last": 10}
    run_pretraining(load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train=train)), tokens)
    saved = sorted(p.name for p in (tmp_path / "t" / "checkpoints").iterdir())
    assert saved == ["step-000001", "step-000002", "step-000003", "step-000004"]


def test_max_restarts_relaunches_after_a_crash(tmp_path):
    tokens = markov_tokens(tmp_path / "tokens")
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 200})
    proc = start("pretrain", str(recipe), "--tokens", str(tokens), "--max-restarts", "2", quiet=False)
    wait_for(tmp_path / "t" / "checkpoints" / "step-000010" / "manifest.json", proc)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGKILL)  # the training process dies like a lost node
    stderr = proc.communicate()[1]
    assert proc.returncode == 0, stderr
    assert "restart 1/2" in stderr
    assert sorted(losses(tmp_path / "t")) == list(range(1, 201))
    assert (tmp_path / "t" / "reports" / "pretrain" / "results.json").is_file()


def tokens_with_tokenizer(root: Path, vocab: dict[str, int]) -> Path:
    """Markov tokens whose index names a WordLevel tokenizer artifact (as the tokenize stage writes)."""
    from tokenizers import Tokenizer, models

    from llmforge.artifacts import write_manifest

    tokenizer_dir = root / "tokenizer"
    tokenizer_dir.mkdir(parents=True)
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(tokenizer_dir / "tokenizer.json"))
    write_manifest(tokenizer_dir, "tokenizer")
    tokens = markov_tokens(root / "tokens")
    index = json.loads((tokens / "index.json").read_text())
    index["tokenizer_path"] = str(tokenizer_dir.resolve())
    (tokens / "index.json").write_text(json.dumps(index))
    write_manifest(tokens, "tokens")
    return tokens


def test_continued_pretraining_needs_the_same_tokenizer(tmp_path):
    from llmforge.console import UserError
    from llmforge.pretrain.run import run_pretraining

    vocab = {f"t{i}": i for i in range(64)}
    tokens = tokens_with_tokenizer(tmp_path / "a", vocab)
    base = run_pretraining(load_recipe(write_recipe(tmp_path / "a.toml", tmp_path, name="base")), tokens)
    assert (base.checkpoint / "tokenizer.json").is_file()  # tokenizer travels with the checkpoint

    # A new run (another data mixture, same tokenizer) starts from the base checkpoint's weights.
    init = {"init_from": str(base.checkpoint)}
    cont = write_recipe(tmp_path / "b.toml", tmp_path, name="cont", model=init, train={"max_steps": 5})
    result = run_pretraining(load_recipe(cont), tokens).results
    first_loss = losses(tmp_path / "cont")[1][0]
    assert first_loss < losses(tmp_path / "base")[1][0] - 1.0  # starts trained, not from scratch
    assert result["params"] == base.results["params"]

    other = tokens_with_tokenizer(tmp_path / "b", {f"w{i}": i for i in range(64)})
    with pytest.raises(UserError, match="its tokenizer differs from the one that made the tokens"):
        run_pretraining(load_recipe(cont, ["run.name=other"]), other)


class _StubScaler:
    """Stands in for Accelerate's fp16 GradScaler (fp16 is refused on CPU): scales by 1, counts updates."""

    def __init__(self):
        self.updates, self.loaded = 0, None

    def scale(self, loss):
        return loss

    def step(self, optimizer, closure=None):
        optimizer.step(closure)

    def update(self):
        self.updates += 1

    def state_dict(self):
        return {"scale": 2.0 ** (8 + self.updates), "_growth_tracker": self.updates}

    def load_state_dict(self, state):
        self.loaded = state


def test_fp16_loss_scaler_state_is_saved_and_restored(tmp_path, monkeypatch):
    from llmforge.pretrain import launch
    from llmforge.pretrain.run import run_pretraining

    real, scalers = launch.make_accelerator, []

    def with_scaler(train, run_dir):
        accelerator = real(train, run_dir)
        accelerator.scaler = _StubScaler()
        scalers.append(accelerator.scaler)
        return accelerator

    monkeypatch.setattr(launch, "make_accelerator", with_scaler)
    tokens = markov_tokens(tmp_path / "tokens")
    train = {"max_steps": 10, "checkpoint_every": 5, "schedule": "constant"}  # extends to 12 steps on resume
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train=train)
    run_pretraining(load_recipe(recipe), tokens)
    state = json.loads(
        (tmp_path / "t" / "checkpoints" / "step-000010" / "trainer_state" / "state.json").read_text()
    )
    assert state["grad_scaler"] == {"scale": 2.0**18, "_growth_tracker": 10}  # one update per step
    run_pretraining(load_recipe(recipe, ["train.max_steps=12"]), tokens)
    assert scalers[1].loaded == {"scale": 2.0**18, "_growth_tracker": 10}  # resumed with the saved loss scale
