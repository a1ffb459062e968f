"""What a checkpoint declares and when one is written: BOS/EOS/PAD, generation settings, non-finite
weights, damaged weights at init_from and at resume, the LR schedule on resume, keep_every, MFU's peak."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pretrain_tokens import markov_tokens, write_recipe, write_tokens

from llmforge.artifacts import write_manifest
from llmforge.console import UserError
from llmforge.recipe import load_recipe

DOCS = ([40, 41, 42, 43], [50, 51, 52])  # two fixed documents: the model learns where each one ends


def real_tokenizer(path: Path) -> Path:
    """A tokenizer artifact written by the tokenize stage's own writer (special tokens first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from llmforge.tokenizer.build import special_token_list
    from llmforge.tokenizer.config import TokenizerConfig
    from llmforge.tokenizer.train import save_pretrained

    cfg = TokenizerConfig(vocab_size=300)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special_token_list(cfg),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["to be or not to be, that is the question"] * 20, trainer)
    path.mkdir(parents=True)
    save_pretrained(tok, cfg, path)
    write_manifest(path, "tokenizer")
    return path


def documents_tokens(path: Path, tokenizer: Path) -> Path:
    """A stream of the two DOCS in random order, each followed by the tokenizer's EOS."""
    from transformers import PreTrainedTokenizerFast

    eos = PreTrainedTokenizerFast.from_pretrained(str(tokenizer)).eos_token_id
    rng = np.random.default_rng(0)
    ids = np.concatenate([DOCS[i] + [eos] for i in rng.integers(0, 2, size=8000)])
    vocab = json.loads((tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = write_tokens(path, ids[:30000], ids[30000:], vocab_size=len(vocab), eos_id=eos)
    index = json.loads((tokens / "index.json").read_text())
    index["tokenizer_path"] = str(tokenizer.resolve())
    (tokens / "index.json").write_text(json.dumps(index))
    write_manifest(tokens, "tokens")
    return tokens


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from llmforge.pretrain.run import run_pretraining

    root = tmp_path_factory.mktemp("ckpt")
    tokens = documents_tokens(root / "tokens", real_tokenizer(root / "tokenizer"))
    train = {"max_steps": 60, "eval_every": 60, "checkpoint_every": 60, "lr": 1e-2}
    return run_pretraining(load_recipe(write_recipe(root / "r.toml", root, train=train)), tokens).checkpoint


def test_bos_eos_pad_agree_in_config_generation_config_and_tokenizer(trained):
    """config.json said bos_token_id=1 while the tokenizer said 0: all three now name EOS as BOS (what
    training put before every document) and the tokenizer's pad token as PAD."""
    from transformers import AutoTokenizer, GenerationConfig

    config = json.loads((trained / "config.json").read_text())
    generation = GenerationConfig.from_pretrained(trained)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert tokenizer.eos_token == "<|eos|>" and tokenizer.pad_token == "<|pad|>"
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert ids[0] == ids[1] != ids[2]
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == ids
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == ids


def test_checkpoint_generates_with_kv_cache_stops_at_eos_and_batches_left_padded(trained):
    """use_cache was saved as false (plain generate() recomputed every prefix) and there was no pad id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained)
    eos, pad = AutoTokenizer.from_pretrained(trained).eos_token_id, model.generation_config.pad_token_id
    assert model.config.use_cache and model.generation_config.use_cache
    out = model.generate(
        torch.tensor([[40, 41]]), max_new_tokens=10, do_sample=False, return_dict_in_generate=True
    )
    assert out.past_key_values is not None  # the KV cache was used
    assert out.sequences[0].tolist() == [40, 41, 42, 43, eos]  # stopped at EOS, 7 tokens early

    batch = torch.tensor([[40, 41], [pad, 50]])
    mask = torch.tensor([[1, 1], [0, 1]])
    rows = model.generate(batch, attention_mask=mask, max_new_tokens=10, do_sample=False).tolist()
    assert rows[0][2:5] == [42, 43, eos]
    assert rows[1][2:5] == [51, 52, eos]  # the left-padded row continues as if alone
    assert len(rows[0]) < 12  # generation stopped once both rows reached EOS


# ------------------------------------------------------------------------------- non-finite values


def test_non_finite_lr_is_refused_by_the_recipe(tmp_path):
    for value in ("inf", "nan"):
        with pytest.raises(UserError, match=f"train.lr = {value}: expected a finite number"):
            load_recipe(write_recipe(tmp_path / "r.toml", tmp_path), [f"train.lr={value}"])


@pytest.fixture
def tokens(tmp_path) -> Path:
    return markov_tokens(tmp_path / "tokens")


def test_non_finite_loss_with_the_guard_off_stops_the_run_without_a_checkpoint(tmp_path, tokens, monkeypatch):
    """lr = inf trained on, wrote a NaN checkpoint and exited 0; with the spike guard off a non-finite loss
    now stops the run (with the guard on it is a spike, tested in test_pretrain_guard)."""
    from llmforge.pretrain import trainer
    from llmforge.pretrain.run import run_pretraining

    real = trainer._Loop._row_losses

    def nan_from_step_3(self, batch):
        losses = real(self, batch)
        if self.state.step >= 2:
            losses.nll = losses.nll * math.nan
        return losses

    monkeypatch.setattr(trainer._Loop, "_row_losses", nan_from_step_3)
    recipe = write_recipe(
        tmp_path / "r.toml",
        tmp_path,
        train={"max_steps": 5, "checkpoint_every": 1, "spike": {"enabled": False}},
    )
    with pytest.raises(RuntimeError, match="step 3: non-finite loss nan with train.spike.enabled = false"):
        run_pretraining(load_recipe(recipe), tokens)
    saved = sorted(p.name for p in (tmp_path / "t" / "checkpoints").iterdir())
    assert saved == ["step-000001", "step-000002"]


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path, tokens, monkeypatch):
    import torch

    from llmforge.pretrain import trainer
    from llmforge.pretrain.run import run_pretraining

    real = trainer._Loop._step

    def poison_after_step_2(self, rows):
        result = real(self, rows)
        if self.state.step == 1:  # the second step (0-based count before the increment)
            with torch.no_grad():
                next(self.model.parameters())[0, 0] = math.inf
        return result

    monkeypatch.setattr(trainer._Loop, "_step", poison_after_step_2)
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 4, "checkpoint_every": 1})
    with pytest.raises(
        RuntimeError, match="step 2: the weights hold NaN or inf, so no checkpoint is written"
    ):
        run_pretraining(load_recipe(recipe), tokens)
    assert sorted(p.name for p in (tmp_path / "t" / "checkpoints").iterdir()) == ["step-000001"]


# --------------------------------------------------------------------------------- damaged weights


def truncate(file: Path, keep: int) -> None:
    file.write_bytes(file.read_bytes()[:keep])


def test_damaged_init_from_safetensors_names_the_file(tmp_path, tokens):
    """A truncated model.safetensors at model.init_from failed with "SafetensorError: header too large"."""
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    base = run_pretraining(
        load_recipe(write_recipe(tmp_path / "a.toml", tmp_path, train={"max_steps": 2})), tokens
    )
    weights = base.checkpoint / "model.safetensors"
    truncate(weights, 100)
    init = {"init_from": str(base.checkpoint)}
    recipe = load_recipe(write_recipe(tmp_path / "b.toml", tmp_path, name="cont", model=init))
    with pytest.raises(
        UserError, match=f"model.init_from: {weights}: header length .* exceeds the file's 100 bytes"
    ):
        preflight(recipe, tokens, resume=False, world_size=1, cuda=False)
    truncate(weights, 4)
    with pytest.raises(UserError, match=f"{weights}: truncated"):
        preflight(recipe, tokens, resume=False, world_size=1, cuda=False)


def test_resume_from_damaged_weights_falls_back_to_the_previous_checkpoint(tmp_path, tokens, capsys):
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(
        tmp_path / "r.toml", tmp_path, train={"max_steps": 6, "checkpoint_every": 2, "keep_last": 3}
    )
    first = run_pretraining(load_recipe(recipe), tokens).results
    checkpoints = tmp_path / "t" / "checkpoints"
    weights = checkpoints / "step-000006" / "model.safetensors"
    truncate(weights, weights.stat().st_size - 10)
    capsys.readouterr()
    again = run_pretraining(load_recipe(recipe), tokens).results
    stderr = capsys.readouterr().err
    assert "step-000006 is damaged" in stderr and "falling back to the previous checkpoint" in stderr
    assert "resuming from step 4" in stderr
    assert again["final_val_loss"] == pytest.approx(first["final_val_loss"], rel=1e-6)  # steps 5-6 redone


def test_damaged_newest_checkpoint_is_set_aside_so_pruning_keeps_the_good_ones(
    tmp_path, tokens, capsys, monkeypatch
):
    """After falling back from a damaged step-000006, the damaged directory still counted as the newest
    checkpoint: with keep_last = 1 an off-schedule save (a pre-emption at step 5) deleted every good one
    and kept the damaged one, and the outcome's checkpoint (rollback's target) was gone."""
    from llmforge.pretrain import trainer
    from llmforge.pretrain.run import run_pretraining

    train = {"max_steps": 6, "checkpoint_every": 2, "keep_last": 3}
    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train=train)
    run_pretraining(load_recipe(recipe), tokens)
    checkpoints = tmp_path / "t" / "checkpoints"
    truncate(checkpoints / "step-000006" / "model.safetensors", 100)
    real = trainer._Loop._checkpoint_if_due
    monkeypatch.setattr(
        trainer._Loop, "_checkpoint_if_due", lambda self, signalled: real(self, self.state.step == 5)
    )
    capsys.readouterr()
    stopped = run_pretraining(load_recipe(recipe, ["train.keep_last=1"]), tokens)
    assert stopped.interrupted and stopped.checkpoint.is_dir()
    assert sorted(p.name for p in checkpoints.iterdir()) == [".damaged-step-000006", "step-000005"]
    stderr = capsys.readouterr().err
    assert "falling back to the previous checkpoint; set it aside as .damaged-step-000006" in stderr
    monkeypatch.undo()
    done = run_pretraining(load_recipe(recipe, ["train.keep_last=1"]), tokens)
    assert done.interrupted is None and done.results["steps"] == 6
    assert sorted(p.name for p in checkpoints.iterdir()) == [".damaged-step-000006", "step-000006"]


# ------------------------------------------------------------------------------------- resume rules


def test_resuming_with_a_larger_max_steps_refuses_to_restart_the_cosine_schedule(tmp_path, tokens):
    """A finished cosine run resumed with max_steps 10 → 20 jumped from the floor LR back up."""
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 10})
    run_pretraining(load_recipe(recipe), tokens)
    with pytest.raises(
        UserError,
        match=r"train.max_steps = 10; resuming with train.max_steps = 20 changes the learning rate .* \(step 10: ",
    ):
        preflight(load_recipe(recipe, ["train.max_steps=20"]), tokens, resume=False, world_size=1, cuda=False)
    # the peak LR itself may be changed on purpose
    assert preflight(
        load_recipe(recipe, ["train.lr=5e-3"]), tokens, resume=False, world_size=1, cuda=False
    ).resume_from


def test_schedule_change_is_refused_even_when_the_saved_train_table_no_longer_validates(
    tmp_path, tokens, capsys
):
    """A saved [train] table that no longer validated (here: a retired key) skipped the check silently."""
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 10})
    run_pretraining(load_recipe(recipe), tokens)
    manifest = tmp_path / "t" / "checkpoints" / "step-000010" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["recipe"]["train"]["retired_key"] = 1
    manifest.write_text(json.dumps(data))
    longer = load_recipe(recipe, ["train.max_steps=20"])
    with pytest.raises(UserError, match="train.max_steps = 10; resuming with train.max_steps = 20 changes"):
        preflight(longer, tokens, resume=True, world_size=1, cuda=False)
    del data["recipe"]["train"]["max_steps"]  # a recipe without the key: a warning, the rest still checked
    manifest.write_text(json.dumps(data))
    capsys.readouterr()
    assert preflight(longer, tokens, resume=True, world_size=1, cuda=False).resume_from
    assert "its recipe has no train.max_steps; the LR-schedule check takes" in capsys.readouterr().err


def test_constant_and_stable_wsd_schedules_extend(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight
    from llmforge.pretrain.run import run_pretraining

    for schedule, steps in (("constant", 6), ("wsd", 4)):
        train = {
            "max_steps": steps,
            "schedule": schedule,
            "warmup_steps": 1,
            "checkpoint_every": 2,
            "keep_last": 5,
        }
        recipe = write_recipe(tmp_path / f"{schedule}.toml", tmp_path, name=schedule, train=train)
        run_pretraining(load_recipe(recipe), tokens)
        if schedule == "wsd":  # resume from step 2, before the 4-step run's decay began at step 3.2
            import shutil

            shutil.rmtree(tmp_path / schedule / "checkpoints" / "step-000004")
        longer = load_recipe(recipe, ["train.max_steps=40"])
        assert preflight(longer, tokens, resume=True, world_size=1, cuda=False).resume_from is not None


def test_keep_every_zero_turns_it_off(tmp_path, tokens):
    from llmforge.pretrain.run import run_pretraining

    train = {"max_steps": 4, "checkpoint_every": 1, "keep_last": 1, "keep_every": 0}
    run_pretraining(load_recipe(write_recipe(tmp_path / "r.toml", tmp_path, train=train)), tokens)
    assert [p.name for p in (tmp_path / "t" / "checkpoints").iterdir()] == ["step-000004"]


def test_unwritable_run_dir_is_found_before_training(tmp_path, tokens):
    from llmforge.pretrain.preflight import preflight

    (tmp_path / "afile").write_text("")
    recipe = load_recipe(write_recipe(tmp_path / "r.toml", tmp_path / "afile" / "runs"))
    with pytest.raises(UserError, match="cannot create the run directory .* is a file, not a directory"):
        preflight(recipe, tokens, resume=False, world_size=1, cuda=False)


def test_model_too_big_for_this_machine_is_refused_before_allocating(tmp_path, tokens):
    """vocab_size = 1e9 died with a raw allocator message; sizes are bounded in the schema and the
    memory is estimated before the model is built."""
    from llmforge.pretrain.preflight import preflight

    with pytest.raises(UserError, match="model.vocab_size = 1000000000: expected a value less than or equal"):
        load_recipe(write_recipe(tmp_path / "r.toml", tmp_path), ["model.vocab_size=1000000000"])
    big = load_recipe(
        write_recipe(tmp_path / "r.toml", tmp_path), ["model.vocab_size=4000000", "model.d_model=8192"]
    )
    with pytest.raises(UserError, match=r"needs \d+ GB per process .* this machine has [\d.]+ GB"):
        preflight(big, tokens, resume=False, world_size=1, cuda=False)


@pytest.mark.parametrize("arch", ["llama", "gpt-neox", "gpt2"])
def test_parameter_estimate_matches_the_built_model(arch):
    from llmforge.pretrain.config import ModelConfig
    from llmforge.pretrain.model import build_model
    from llmforge.pretrain.preflight import estimate_params

    cfg = ModelConfig(
        arch=arch, n_layers=2, d_model=64, n_heads=4, max_seq_len=32, tie_embeddings=arch != "gpt2"
    )
    model = build_model(cfg, vocab_size=100, eos_id=0, seed=0)
    assert estimate_params(cfg, 100) == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------- MFU's peak


def test_mfu_divides_by_train_peak_flops_and_says_which_peak(tmp_path, tokens):
    """train.peak_flops was documented and never read."""
    from llmforge.pretrain.run import run_pretraining

    recipe = write_recipe(tmp_path / "r.toml", tmp_path, train={"max_steps": 2, "peak_flops": 1e15})
    r = run_pretraining(load_recipe(recipe), tokens).results
    assert r["peak_flops"] == 1e15 and r["peak_flops_source"] == "train.peak_flops"
    assert r["mfu"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 1e15)


def test_unknown_gpu_has_unknown_mfu_and_says_how_to_set_it(monkeypatch):
    import torch

    from llmforge.pretrain.metrics import device_peak

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA L40")
    assert device_peak("bf16-mixed").flops == 181.05e12  # not the L4's 121 (substring match)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA Z9000")
    peak = device_peak("bf16-mixed")
    assert peak.flops is None and "set train.peak_flops" in peak.source
    assert device_peak("bf16-mixed", configured=2e14).flops == 2e14


def test_cpu_peak_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    """The CPU peak was a constant of one development machine times the thread count."""
    from llmforge.pretrain import metrics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    metrics._measured_once.cache_clear()
    calls = []
    monkeypatch.setattr(metrics, "measure_matmul_flops", lambda dtype: calls.append(dtype) or 1.5e11)
    first = metrics.device_peak("fp32")
    second = metrics.device_peak("fp32")
    assert first.flops == second.flops == 1.5e11 and calls == ["fp32"]
    assert "fp32 matmul measured on this CPU" in first.source
    assert (tmp_path / "llmforge" / metrics.CPU_PEAK_FILE).is_file()
    metrics._measured_once.cache_clear()


def test_cpu_peak_measured_under_load_does_not_stick(tmp_path, monkeypatch):
    """A bf16 peak measured while other work loaded the cores (96 MFLOP/s) was cached forever, and the GPU
    benchmark harness then reported an MFU of 129: the cache keeps the best measurement seen."""
    from llmforge.pretrain import metrics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for measured, kept in ((9.6e7, 9.6e7), (7.5e11, 7.5e11), (2e11, 7.5e11)):
        metrics._measured_once.cache_clear()
        monkeypatch.setattr(metrics, "measure_matmul_flops", lambda dtype, m=measured: m)
        assert metrics.device_peak("bf16-mixed").flops == kept
    metrics._measured_once.cache_clear()


def test_cpu_peak_is_measured_only_by_local_rank_0_once_cached(tmp_path, monkeypatch):
    """Every torchrun rank measured a matmul at once, each on cores the others were loading."""
    from llmforge.pretrain import metrics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    for measured, peak, rank in ((1.5e11, 1.5e11, "1"), (9e11, 1.5e11, "1"), (9e11, 9e11, "0")):
        metrics._measured_once.cache_clear()
        monkeypatch.setenv("LOCAL_RANK", rank)
        monkeypatch.setattr(metrics, "measure_matmul_flops", lambda dtype, m=measured: calls.append(m) or m)
        assert metrics.device_peak("fp32").flops == peak
    assert calls == [1.5e11, 9e11]  # rank 1 measured only while nothing was cached
    metrics._measured_once.cache_clear()


def test_matmul_measurement_is_a_plausible_peak():
    from llmforge.pretrain.metrics import measure_matmul_flops

    assert 1e8 < measure_matmul_flops("fp32", budget_s=0.05) < 1e13


# --------------------------------------------------------------------------- launcher and multi-node


def test_max_restarts_under_torchrun_is_refused(tmp_path, tokens, cli):
    """--max-restarts under torchrun supervised each rank alone (one crash left the others blocked)."""
    recipe = write_recipe(tmp_path / "r.toml", tmp_path)
    r = cli("pretrain", str(recipe), "--tokens", str(tokens), "--max-restarts", "2", env={"WORLD_SIZE": "2"})
    assert r.returncode == 2, r.stderr
    assert "torchrun its own --max-restarts" in r.stderr and not (tmp_path / "t").exists()


class _Rank:
    """A stand-in for rank 1 of 2 whose run directory is not the one rank 0 writes to."""

    num_processes, process_index, is_main_process = 2, 1, False

    def wait_for_everyone(self):
        pass


def test_a_rank_that_cannot_see_the_run_directory_is_refused(tmp_path, monkeypatch):
    import accelerate.utils

    from llmforge.pretrain.launch import check_shared_run_dir

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", lambda token: token)
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda item: [(0, "node0", True), *item])
    with pytest.raises(UserError, match="rank 1 on .* cannot see the run directory .* all nodes share"):
        check_shared_run_dir(tmp_path / "elsewhere", _Rank(), wait_s=0.1)


def test_arch_specific_keys_for_another_arch_are_refused(tmp_path):
    """model.rotary_pct was ignored for llama and gpt2, model.rope_theta for gpt2."""
    recipe = write_recipe(tmp_path / "r.toml", tmp_path)
    with pytest.raises(UserError, match="model.rotary_pct applies to arch = 'gpt-neox' only, not 'llama'"):
        load_recipe(recipe, ["model.rotary_pct=0.5"])
    with pytest.raises(UserError, match="model.rope_theta applies to .* not 'gpt2'"):
        load_recipe(recipe, ['model.arch="gpt2"', "model.rope_theta=500000"])
    assert load_recipe(recipe, ['model.arch="gpt-neox"', "model.rotary_pct=0.5"]).model.rotary_pct == 0.5
