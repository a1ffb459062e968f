"""Checks of the base checkpoint, read from its files without transformers (before any work starts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.artifacts.model_dir import ENCODER_TYPES, model_config
from llmforge.console import UserError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def check_base(path: str | Path, max_len: int) -> dict[str, Any]:
    """config.json of an encoder checkpoint dir with weights and a tokenizer; UserError naming what is not."""
    path = Path(path)
    where = f"finetune.base: {path}"
    if not path.is_dir():
        raise UserError(f"{where}: no such directory (expected a checkpoint or a Hugging Face model dir)")
    config = _read_config(path)
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise UserError(f"{where}: no weights (*.safetensors or pytorch_model.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"{where}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the tokenizer there"
        )
    _check_encoder(config, where)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and max_len > positions:
        raise UserError(
            f"finetune.max_len = {max_len}: above the base model's context ({positions} positions)"
        )
    return config


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return model_config(path)
    except UserError as e:
        raise UserError(f"finetune.base: {e}") from None


def _check_encoder(config: dict[str, Any], where: str) -> None:
    model_type = config.get("model_type")
    architectures = [str(a) for a in config.get("architectures") or [] if isinstance(a, str)]
    if config.get("is_encoder_decoder") is True:
        raise UserError(
            f"{where}: an encoder-decoder ({model_type}); classify fine-tunes encoder-only models"
        )
    if model_type in ENCODER_TYPES and config.get("is_decoder") is not True:
        return
    if config.get("is_decoder") is True or any(a.endswith("ForCausalLM") for a in architectures):
        shown = ", ".join(architectures) or f"model_type {model_type}"
        raise UserError(
            f"{where}: a causal LM only ({shown}); classify fine-tunes an encoder (e.g. arch = 'bert', "
            "objective = 'mlm')"
        )
    raise UserError(
        f"{where}: model_type {model_type!r} is not an encoder classify knows ({', '.join(ENCODER_TYPES)})"
    )
