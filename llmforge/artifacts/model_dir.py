"""A Hugging Face model directory as the stages read it before loading anything: its config.json, and the
encoder-only model types (read without transformers, so a bad directory is refused before any work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.console import UserError

# Encoder-only model types (a masked-LM or classification head on a bidirectional encoder).
ENCODER_TYPES = (
    "bert", "roberta", "xlm-roberta", "distilbert", "modernbert", "electra", "albert", "deberta",
    "deberta-v2", "camembert", "mpnet", "ernie", "nomic_bert",
)  # fmt: skip


def model_config(path: str | Path) -> dict[str, Any]:
    """config.json of the model dir at `path`; UserError when it is missing or not a JSON object."""
    f = Path(path) / "config.json"
    if not f.is_file():
        raise UserError(f"{path}: not a Hugging Face model dir (no config.json)")
    try:
        config = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{f}: not a readable JSON config ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{f}: expected a JSON object")
    return config
