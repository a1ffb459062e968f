"""Checks of the base checkpoint, read from its files without transformers (before any work starts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.console import UserError

# Encoder-only model types AutoModelForSequenceClassification puts a classification head on.
ENCODER_TYPES = (
    "bert", "roberta", "xlm-roberta", "distilbert", "modernbert", "electra", "albert", "deberta",
    "deberta-v2", "camembert", "mpnet", "ernie", "nomic_bert",
)  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def check_base(path: str | Path, max_len: int) -> dict[str, Any]:
    """config.json of an encoder checkpoint dir with weights and a tokenizer; UserError naming what is not."""
    path = Path(path)
    where = f"finetune.base: {path}"
    if not path.is_dir():
        raise UserError(f"{where}: no such directory (expected a checkpoint or a Hugging Face model dir)")
    config = _read_config(path, where)
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


def _read_config(path: Path, where: str) -> dict[str, Any]:
    f = path / "config.json"
    if not f.is_file():
        raise UserError(f"{where}: not a Hugging Face model dir (no config.json)")
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{f}: not a readable JSON config ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{f}: expected a JSON object")
    return config


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
