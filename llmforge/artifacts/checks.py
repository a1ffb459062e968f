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


def _check_classifier(path: Path) -> None:
    """A fastText quality classifier (`llmforge data train-classifier`): model.bin, non-empty."""
    f = path / "model.bin"
    if not f.is_file() or f.stat().st_size == 0:
        raise UserError("classifier artifact has no (or an empty) model.bin")


_CHECKS = {
    "dataset": _check_dataset,
    "classifier": _check_classifier,
    "tokenizer": _check_tokenizer,
    "tokens": _check_tokens,
    "checkpoint": _check_checkpoint,
}


def _check_files(path: Path, manifest: dict) -> None:
    """Every file the manifest lists is present with the size it had when the artifact was written."""
    for name, size in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise UserError(f"{name} is missing (listed in manifest.json)")
        if f.stat().st_size != size:
            raise UserError(
                f"{name} is {f.stat().st_size} bytes, manifest.json says {size} (truncated or modified)"
            )


def check_artifact(path: str | Path, manifest: dict) -> str | None:
    """None when the artifact meets its contract (files as written, plus its kind's checks), else why not."""
    path = Path(path)
    try:
        check = _CHECKS.get(manifest["kind"])
        if check is not None:  # the kind's own check first: its message is the more specific
            check(path)
        _check_files(path, manifest)
    except UserError as e:
        return str(e).removeprefix(f"{path}: ")
    return None
