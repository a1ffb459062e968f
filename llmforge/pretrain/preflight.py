"""Everything checked before a pretraining run writes anything: the tokens artifact, shapes, batch
arithmetic, precision on this device, the checkpoint to resume or to start from. Problems are
`UserError`s that say which key or file to change."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.archs import family, family_of_model_type
from llmforge.artifacts import CHECKPOINTS_DIR, read_manifest, require
from llmforge.artifacts.tokens import validate_tokens
from llmforge.console import UserError, warn
from llmforge.objectives.base import Objective
from llmforge.pretrain.checkpoint import (
    SHARDS_DIR,
    STATE_DIR,
    SpecialTokens,
    list_checkpoints,
    safetensors_header,
    safetensors_problem,
    set_aside,
)
from llmforge.pretrain.config import ModelConfig, TrainConfig
from llmforge.pretrain.launch import check_launcher
from llmforge.pretrain.model import shape_of
from llmforge.pretrain.objective import make_objective
from llmforge.pretrain.schedule import lr_at
from llmforge.recipe import Recipe

# fp32 weights + fp32 gradients + AdamW's two fp32 moments (mixed precision keeps fp32 master weights).
TRAINING_BYTES_PER_PARAM = 16
# Keys whose change moves the LR of steps already taken (the peak LR itself may be changed on purpose).
SCHEDULE_KEYS = ("max_steps", "schedule", "warmup_steps", "decay_fraction", "min_lr_ratio")


@dataclass(frozen=True)
class Inputs:
    """What a validated run reads."""

    tokens: Path
    index: dict[str, Any]
    vocab_size: int  # the model's
    eos_id: int
    tokenizer_dir: Path | None
    resume_from: Path | None
    world_size: int
    specials: SpecialTokens  # BOS/EOS/PAD the checkpoints declare
    objective: Objective  # what a batch and its loss are (built once: a masked LM loads its tokenizer)


def preflight(recipe: Recipe, tokens: Path, *, resume: bool, world_size: int, cuda: bool) -> Inputs:
    model, train = recipe.table("model"), recipe.table("train")
    if not tokens.exists():
        raise UserError(
            f"{tokens}: no tokens artifact here; tokenize the dataset first or pass --tokens PATH"
        )
    require(tokens, "tokens")
    index = validate_tokens(tokens)
    tokenizer_dir = _tokenizer_dir(index, tokens)
    specials = SpecialTokens.from_tokenizer(tokenizer_dir, int(index["eos_id"]))
    # The objective refuses what it cannot train with (no mask token, too few sentinels) before any work.
    objective = make_objective(
        model, train.seq_len, index=index, tokenizer_dir=tokenizer_dir, pad_id=specials.pad_id
    )
    need = objective.window_length(train.seq_len) + objective.overlap
    for split in ("train", "val"):
        info = index["splits"].get(split)
        if not info or info.get("tokens", 0) < need:
            have = info.get("tokens", 0) if info else 0
            raise UserError(
                f"{tokens}: split '{split}' has {have} tokens, fewer than one window of the {need} tokens a "
                f"{objective.name} example of train.seq_len = {train.seq_len} reads; lower train.seq_len or "
                f"tokenize more data"
            )
    data_vocab = int(index["vocab_size"])
    init_config = _init_config(model.init_from, model.arch) if model.init_from else None
    vocab = _model_vocab(model.vocab_size, init_config, data_vocab)
    context = init_config.get("max_position_embeddings") if init_config else model.max_seq_len
    if context is not None and train.seq_len > context:
        raise UserError(
            f"train.seq_len = {train.seq_len} exceeds the model's context of {context} tokens; "
            f"lower train.seq_len or raise model.max_seq_len"
        )
    rows = train.global_batch_tokens // train.seq_len
    if rows % (train.micro_batch * world_size):
        raise UserError(
            f"train.global_batch_tokens = {train.global_batch_tokens} is {rows} sequences, not a multiple of "
            f"train.micro_batch × processes = {train.micro_batch} × {world_size}; change micro_batch or the batch"
        )
    check_launcher(train)
    _check_device(train, cuda)
    if model.init_from:
        _check_same_tokenizer(Path(model.init_from), tokenizer_dir)
    _check_memory(model, train, vocab, world_size, cuda)
    resume_from = _resume_point(recipe, tokens, resume)
    check_writable(recipe.run_dir)
    return Inputs(
        tokens=tokens,
        index=index,
        vocab_size=vocab,
        eos_id=int(index["eos_id"]),
        tokenizer_dir=tokenizer_dir,
        resume_from=resume_from,
        world_size=world_size,
        specials=specials,
        objective=objective,
    )


def check_writable(run_dir: Path) -> None:
    """The run directory (or the nearest folder that exists above it) takes a file, tried now rather
    than found out at the first checkpoint. Nothing is left behind."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"run.out_dir: cannot create the run directory {run_dir}: {existing} is a file, not a directory; "
            f"choose another run.out_dir or run.name"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".llmforge-write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(
            f"run.out_dir: cannot write the run directory {run_dir} ({e.strerror} in {existing}); "
            f"choose a writable run.out_dir"
        ) from None


def estimate_params(model: ModelConfig, vocab: int) -> int:
    """Parameters of the model `[model]` describes, from its family's formula (llmforge/archs), without torch."""
    if model.init_from:
        header = _init_weights_header(Path(model.init_from))
        return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return family(model.arch).param_counts(shape_of(model, vocab, model.max_seq_len))["total"]


def _init_weights_header(init_from: Path) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for file in sorted(init_from.glob("*.safetensors")):
        header.update(safetensors_header(file))
    return header


def _check_memory(model: ModelConfig, train: TrainConfig, vocab: int, world_size: int, cuda: bool) -> None:
    """Refuse a model whose weights, gradients and optimizer state alone exceed this machine's memory,
    before allocating it (activations come on top)."""
    params = estimate_params(model, vocab)
    need = params * TRAINING_BYTES_PER_PARAM
    if train.distributed.strategy == "fsdp":
        need /= world_size
    have, where = _memory_per_process(cuda)
    if need > have:
        raise UserError(
            f"the model ({params / 1e9:.3g}B parameters) needs {_gb(need)} GB per process for weights, "
            f"gradients and AdamW state, this machine has {_gb(have)} GB {where}; lower model.vocab_size, "
            f"model.d_model or model.n_layers, or shard it (train.distributed.strategy = 'fsdp' over more GPUs)"
        )


def _gb(n_bytes: float) -> str:
    """Gigabytes to 3 significant digits, without an exponent (1,070 GB, not 1.07e+03)."""
    gb = n_bytes / 1e9
    return f"{gb:.3g}" if gb < 1000 else f"{gb:.0f}"


def _memory_per_process(cuda: bool) -> tuple[float, str]:
    if cuda:
        import torch

        return float(torch.cuda.get_device_properties(0).total_memory), "on each GPU"
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return total / local, "of RAM" if local == 1 else f"of RAM per process ({local} processes share it)"


def _model_vocab(configured: int | None, init_config: dict[str, Any] | None, data_vocab: int) -> int:
    if init_config is not None:
        vocab, key = int(init_config["vocab_size"]), "model.init_from's config.json vocab_size"
    elif configured is not None:
        vocab, key = configured, "model.vocab_size"
    else:
        return data_vocab
    if vocab < data_vocab:
        raise UserError(
            f"{key} = {vocab} is smaller than the tokens artifact's vocabulary of {data_vocab}; "
            f"set model.vocab_size >= {data_vocab} (or leave it out to use the tokens' vocabulary)"
        )
    return vocab


def _init_config(init_from: str, arch: str) -> dict[str, Any]:
    path = Path(init_from)
    if not (path / "config.json").is_file():
        raise UserError(
            f"model.init_from = {init_from!r}: not a Hugging Face model directory (no config.json)"
        )
    if not any(path.glob("*.safetensors")):
        raise UserError(f"model.init_from = {init_from!r}: has no weights (*.safetensors)")
    for file in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(file)
        if problem:
            raise UserError(
                f"model.init_from: {file}: {problem}; restore it or start from another checkpoint"
            )
    config = json.loads((path / "config.json").read_text())
    try:
        theirs = family_of_model_type(config.get("model_type", "")).name
    except UserError:
        raise UserError(
            f"model.init_from = {init_from!r}: its model_type {config.get('model_type')!r} is no family "
            f"llmforge builds (llmforge/archs)"
        ) from None
    if theirs != arch:
        raise UserError(
            f"model.init_from = {init_from!r} is a {theirs} model: set model.arch = {theirs!r} (it picks the "
            f"objective), not {arch!r}"
        )
    return config


def _check_device(train: Any, cuda: bool) -> None:
    import torch

    if train.precision == "fp16-mixed" and not cuda:
        raise UserError(
            "train.precision = 'fp16-mixed': fp16 runs at ~0.4 GFLOP/s on CPU; use 'bf16-mixed' or 'fp32' here"
        )
    if train.precision == "bf16-mixed" and cuda and not torch.cuda.is_bf16_supported():
        raise UserError("train.precision = 'bf16-mixed': this GPU has no bf16; use 'fp16-mixed'")
    if train.distributed.strategy == "fsdp" and train.precision == "fp16-mixed":
        raise UserError(
            "train.distributed.strategy = 'fsdp' with fp16 has no loss scaler here; use 'bf16-mixed'"
        )
    for tracker in train.trackers:
        if importlib.util.find_spec(tracker) is None:
            raise UserError(
                f"train.report_to = {train.report_to!r}: the {tracker} package is not installed; "
                f"`pip install {tracker}` or leave {tracker} out of train.report_to"
            )


def _tokenizer_dir(index: dict[str, Any], tokens: Path) -> Path | None:
    path = index.get("tokenizer_path")
    if not path:
        return None
    if not (Path(path) / "tokenizer.json").is_file():
        warn(f"{tokens}: tokenizer_path {path} has no tokenizer.json; checkpoints will carry no tokenizer")
        return None
    return Path(path)


def _check_same_tokenizer(init_from: Path, tokenizer_dir: Path | None) -> None:
    """Continued pretraining needs the checkpoint's tokenizer to be the one the tokens were made with."""
    if tokenizer_dir is None:
        raise UserError(
            "model.init_from: the tokens artifact names no tokenizer (index.json tokenizer_path), so its "
            "vocabulary cannot be checked against the checkpoint's; tokenize with the checkpoint's tokenizer"
        )
    theirs = init_from / "tokenizer.json"
    if not theirs.is_file():
        raise UserError(
            f"model.init_from = {str(init_from)!r}: has no tokenizer.json to check against the tokens'"
        )
    if _vocabulary(theirs) != _vocabulary(tokenizer_dir / "tokenizer.json"):
        raise UserError(
            f"model.init_from = {str(init_from)!r}: its tokenizer differs from the one that made the tokens "
            f"({tokenizer_dir}); re-tokenize the data with the checkpoint's tokenizer"
        )


def _vocabulary(tokenizer_json: Path) -> tuple[Any, Any]:
    data = json.loads(tokenizer_json.read_text())
    added = sorted((t["id"], t["content"]) for t in data.get("added_tokens", []))
    return data.get("model", {}).get("vocab"), added


def _resume_point(recipe: Recipe, tokens: Path, resume: bool) -> Path | None:
    """The newest checkpoint whose files are whole; a damaged newer one is skipped with a warning."""
    checkpoints = recipe.run_dir / CHECKPOINTS_DIR
    found = list_checkpoints(checkpoints)
    if not found:
        if resume:
            raise UserError(f"--resume: {checkpoints} holds no complete checkpoint to resume from")
        return None
    latest, damaged = None, []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            latest = path
            break
        damaged.append((path, problem))
    if latest is None:
        for path, problem in damaged:
            warn(f"{path} is damaged ({problem})")
        raise UserError(
            f"{checkpoints}: every checkpoint is damaged (see the warnings); remove {checkpoints} to start over"
        )
    rank0 = os.environ.get("RANK", "0") == "0"
    for path, problem in damaged:
        # Rank 0 sets it aside, else pruning would count it as the newest checkpoint and delete good ones.
        aside = f"; set it aside as {set_aside(path).name}" if rank0 else ""
        warn(f"{path} is damaged ({problem}); falling back to the previous checkpoint{aside}")
    saved = read_manifest(latest).get("recipe", {})
    saved_model, model_now = saved.get("model") or {}, recipe.to_dict().get("model") or {}
    if saved_model != model_now:
        changed = sorted(
            k for k in saved_model.keys() | model_now.keys() if saved_model.get(k) != model_now.get(k)
        )
        diff = "; ".join(f"model.{k}: {saved_model.get(k)!r} then, {model_now.get(k)!r} now" for k in changed)
        raise UserError(
            f"{latest}: was trained with a different [model] table ({diff}); restore it, or start a new run "
            f"(another run.name, or remove {checkpoints})"
        )
    if saved.get("train", {}).get("seq_len") != recipe.table("train").seq_len:
        raise UserError(f"{latest}: was trained with another train.seq_len; restore it to resume")
    _check_same_tokens(latest, tokens)
    _check_same_schedule(latest, saved.get("train", {}), recipe.table("train"))
    return latest


def checkpoint_problem(path: Path) -> str | None:
    """What makes a checkpoint unusable for resuming (weights or trainer state missing or cut short)."""
    shards = path / STATE_DIR / SHARDS_DIR
    if shards.is_dir():
        problem = _shards_problem(path, shards)
    else:
        problem = _weights_problem(path / "model.safetensors")
    if problem:
        return problem
    names = ("rng.pt", "state.json") if shards.is_dir() else ("optimizer.pt", "rng.pt", "state.json")
    for name in names:
        file = path / STATE_DIR / name
        if not file.is_file() or file.stat().st_size == 0:
            return f"{STATE_DIR}/{name} is missing or empty"
    return None


def _weights_problem(weights: Path) -> str | None:
    if not weights.is_file():
        return "no model.safetensors"
    try:
        problem = safetensors_problem(weights)
    except OSError as e:  # e.g. set aside by rank 0 while this rank read it
        problem = f"unreadable ({e.strerror})"
    return f"model.safetensors: {problem}" if problem else None


def _shards_problem(path: Path, shards: Path) -> str | None:
    """Sharded state (torch.distributed.checkpoint) has no checksum of its own: every shard file the
    checkpoint's manifest lists must be there with the size it recorded."""
    try:
        recorded = read_manifest(path).get("files", {})
    except UserError as e:
        return str(e)
    prefix = f"{STATE_DIR}/{SHARDS_DIR}/"
    expected = {name: size for name, size in recorded.items() if name.startswith(prefix)}
    if f"{prefix}.metadata" not in expected:
        return f"its manifest lists no {prefix}.metadata"
    for name, size in sorted(expected.items()):
        try:
            have = (path / name).stat().st_size
        except OSError as e:
            return f"{name}: {e.strerror.lower()}"
        if have != size:
            return f"{name}: {have} bytes where the manifest records {size} (truncated or corrupted)"
    if (path / "model.safetensors").is_file():
        return _weights_problem(path / "model.safetensors")
    return None


def _check_same_schedule(checkpoint: Path, saved_train: dict[str, Any], train: TrainConfig) -> None:
    """Resuming must not change the LR of steps already taken: a cosine schedule stretched to a larger
    max_steps would jump back up. Constant and inverse-sqrt schedules, and WSD before its decay, extend.
    Only the schedule keys of the saved `train` table are read (the rest of it may no longer validate)."""
    missing = [k for k in SCHEDULE_KEYS if k not in saved_train]
    if missing:
        warn(
            f"{checkpoint}: its recipe has no train.{', train.'.join(missing)}; "
            f"the LR-schedule check takes the current values"
        )
    saved = {k: saved_train.get(k, getattr(train, k)) for k in SCHEDULE_KEYS}
    changed = [k for k in SCHEDULE_KEYS if saved[k] != getattr(train, k)]
    if not changed:
        return
    was = ", ".join(f"train.{k} = {saved[k]!r}" for k in changed)
    now = ", ".join(f"train.{k} = {getattr(train, k)!r}" for k in changed)
    fix = (
        "restore it, or start a new run from this checkpoint (another run.name with model.init_from), or "
        "train with schedule = 'wsd' or 'constant', which extend to a larger max_steps"
    )
    try:  # the peak LR itself may be changed on purpose
        before = TrainConfig.model_validate({**saved, "lr": train.lr})
    except ValueError:
        raise UserError(
            f"{checkpoint}: was trained with {was}, which no longer validates, so resuming with {now} "
            f"cannot be checked to keep the learning rate of steps already taken; {fix}"
        ) from None
    step = json.loads((checkpoint / STATE_DIR / "state.json").read_text())["step"]
    stride = max(1, step // 100_000)
    differing = [
        (abs(new - old) / max(abs(old), 1e-30), s, old, new)
        for s in sorted({*range(0, step, stride), step - 1})
        if s >= 0 and not math.isclose(old := lr_at(s, before), new := lr_at(s, train), rel_tol=1e-9)
    ]
    if differing:
        _, s, old, new = max(differing)  # the step whose LR would change most, so the message shows it
        raise UserError(
            f"{checkpoint}: was trained with {was}; resuming with {now} changes the learning rate "
            f"of steps already taken (step {s + 1}: {old:.4g} → {new:.4g}), so the LR would jump; {fix}"
        )


def _check_same_tokens(checkpoint: Path, tokens: Path) -> None:
    """Resuming continues a data cursor, so it must be over the same tokens (content hashes leave timings
    out: rebuilding the same data from the same inputs gives the same hash)."""
    trained_on = [i for i in read_manifest(checkpoint).get("inputs", []) if i.get("kind") == "tokens"]
    now = read_manifest(tokens).get("content_hash")
    if trained_on and now and trained_on[0].get("content_hash") not in (None, now):
        raise UserError(
            f"{checkpoint}: was trained on other tokens than {tokens} holds now (content hash "
            f"{trained_on[0]['content_hash'][:19]}… ≠ {now[:19]}…), so its data cursor means nothing there; "
            f"restore those tokens, or train on the new ones in a new run (another run.name) with "
            f'model.init_from = "{checkpoint}"'
        )
