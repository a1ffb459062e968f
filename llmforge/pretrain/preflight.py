"""Everything checked before a pretraining run writes anything: the tokens artifact, shapes, batch
arithmetic, precision on this device, the checkpoint to resume or to start from. Problems are
`UserError`s that say which key or file to change."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import CHECKPOINTS_DIR, read_manifest, require
from llmforge.artifacts.tokens import validate_tokens
from llmforge.console import UserError, warn
from llmforge.pretrain.checkpoint import latest_checkpoint
from llmforge.pretrain.launch import check_launcher
from llmforge.recipe import Recipe


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


def preflight(recipe: Recipe, tokens: Path, *, resume: bool, world_size: int, cuda: bool) -> Inputs:
    model, train = recipe.table("model"), recipe.table("train")
    if not tokens.exists():
        raise UserError(
            f"{tokens}: no tokens artifact here; tokenize the dataset first or pass --tokens PATH"
        )
    require(tokens, "tokens")
    index = validate_tokens(tokens)
    for split in ("train", "val"):
        info = index["splits"].get(split)
        if not info or info.get("tokens", 0) < train.seq_len + 1:
            have = info.get("tokens", 0) if info else 0
            raise UserError(
                f"{tokens}: split '{split}' has {have} tokens, fewer than one window of train.seq_len+1 = "
                f"{train.seq_len + 1}; lower train.seq_len or tokenize more data"
            )
    data_vocab = int(index["vocab_size"])
    init_config = _init_config(model.init_from) if model.init_from else None
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
    tokenizer_dir = _tokenizer_dir(index, tokens)
    if model.init_from:
        _check_same_tokenizer(Path(model.init_from), tokenizer_dir)
    return Inputs(
        tokens=tokens,
        index=index,
        vocab_size=vocab,
        eos_id=int(index["eos_id"]),
        tokenizer_dir=tokenizer_dir,
        resume_from=_resume_point(recipe, tokens, resume),
        world_size=world_size,
    )


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


def _init_config(init_from: str) -> dict[str, Any]:
    path = Path(init_from)
    if not (path / "config.json").is_file():
        raise UserError(
            f"model.init_from = {init_from!r}: not a Hugging Face model directory (no config.json)"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise UserError(f"model.init_from = {init_from!r}: has no weights (*.safetensors or *.bin)")
    return json.loads((path / "config.json").read_text())


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
    if train.report_to != "none" and importlib.util.find_spec(train.report_to) is None:
        raise UserError(
            f"train.report_to = {train.report_to!r}: the {train.report_to} package is not installed; "
            f"`pip install {train.report_to}` or set train.report_to = 'none'"
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
    checkpoints = recipe.run_dir / CHECKPOINTS_DIR
    latest = latest_checkpoint(checkpoints)
    if latest is None:
        if resume:
            raise UserError(f"--resume: {checkpoints} holds no complete checkpoint to resume from")
        return None
    saved = read_manifest(latest).get("recipe", {})
    if saved.get("model") != recipe.to_dict().get("model"):
        raise UserError(
            f"{latest}: was trained with a different [model] table; restore it, or start a new run "
            f"(another run.name, or remove {checkpoints})"
        )
    if saved.get("train", {}).get("seq_len") != recipe.table("train").seq_len:
        raise UserError(f"{latest}: was trained with another train.seq_len; restore it to resume")
    _check_same_tokens(latest, tokens)
    return latest


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
