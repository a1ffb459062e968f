"""Finding and loading the model under evaluation: a `checkpoint` artifact or any local Hugging Face model dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, require
from llmforge.console import UserError


def resolve(path: str | Path) -> Path:
    """The model directory, after checking it is a checkpoint artifact or an HF directory with config.json."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such model directory")
    if (path / MANIFEST).is_file():
        require(path, "checkpoint")
    elif not (path / "config.json").is_file():
        raise UserError(
            f"{path}: not a checkpoint (no manifest.json) nor a Hugging Face model dir (no config.json)"
        )
    return path


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer), or exit 2 naming what did not load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{path}: tokenizer does not load ({e})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"{path}: model does not load ({e})") from None
    return model.to(pick_device(device)).eval(), tokenizer
