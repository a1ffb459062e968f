"""Contract checks per artifact kind, used by `llmforge inspect` and by stages reading an input."""

from __future__ import annotations

import json
from pathlib import Path

from llmforge.console import UserError


def _check_dataset(path: Path) -> None:
    from llmforge.artifacts.dataset import dataset_files

    dataset_files(path)


def _check_tokenizer(path: Path) -> None:
    f = path / "tokenizer.json"
    if not f.is_file():
        raise UserError("tokenizer artifact has no tokenizer.json")
    try:
        json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"tokenizer.json does not parse ({e})") from None


def _check_tokens(path: Path) -> None:
    from llmforge.artifacts.tokens import validate_tokens

    validate_tokens(path)


def _check_checkpoint(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise UserError("checkpoint has no config.json")
    if not any(path.glob("*.safetensors")):
        raise UserError("checkpoint has no *.safetensors weights")


_CHECKS = {
    "dataset": _check_dataset,
    "tokenizer": _check_tokenizer,
    "tokens": _check_tokens,
    "checkpoint": _check_checkpoint,
}


def check_artifact(path: str | Path, kind: str) -> str | None:
    """None when the artifact meets its kind's contract, else the reason it does not."""
    check = _CHECKS.get(kind)
    if check is None:
        return None
    try:
        check(Path(path))
    except UserError as e:
        return str(e).removeprefix(f"{path}: ")
    return None
