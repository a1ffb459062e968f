"""Contract checks per artifact kind, used by `llmforge inspect` and by stages reading an input."""

from __future__ import annotations

import json
from pathlib import Path

from llmforge.artifacts.model_dir import SHARDS_METADATA
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
    weights = sorted(path.glob("*.safetensors"))
    if not weights and (path / SHARDS_METADATA).is_file():
        return  # FSDP shards only: the manifest's file sizes (checked for every kind) cover the shard files
    if not weights:
        raise UserError("checkpoint has no *.safetensors weights")
    for f in weights:
        _check_safetensors_header(f)


def _check_safetensors_header(f: Path) -> None:
    """A safetensors file starts with an 8-byte little-endian length and that many bytes of JSON header;
    a truncated or overwritten file fails here without loading any tensor."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length <= 0 or 8 + length > size:
            raise UserError(f"{f.name}: not a safetensors file (corrupt or truncated header)")
        try:
            json.loads(fh.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{f.name}: not a safetensors file (its header is not JSON)") from None


def _check_classifier(path: Path) -> None:
    """A fastText quality classifier (`llmforge data train-classifier`): model.bin, non-empty."""
    f = path / "model.bin"
    if not f.is_file() or f.stat().st_size == 0:
        raise UserError("classifier artifact has no (or an empty) model.bin")


def _check_preferences(path: Path) -> None:
    """Preference pairs (`rlhf make-preference-pairs`, a round's judged pairs): train.jsonl whose first row
    holds string `chosen` and `rejected` replies."""
    f = path / "train.jsonl"
    if not f.is_file() or f.stat().st_size == 0:
        raise UserError("preferences artifact has no (or an empty) train.jsonl")
    with f.open(encoding="utf-8", errors="replace") as lines:
        first = lines.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        raise UserError(f"{f}:1: not a JSON object") from None
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("chosen", "rejected")):
        raise UserError(f"{f}:1: a preference row needs string fields 'chosen' and 'rejected'")


_CHECKS = {
    "preferences": _check_preferences,
    "dataset": _check_dataset,
    "classifier": _check_classifier,
    "tokenizer": _check_tokenizer,
    "tokens": _check_tokens,
    "checkpoint": _check_checkpoint,
}


# What each kind's directory holds, to tell a layout from the kind a manifest claims (first match wins:
# a checkpoint holds tokenizer files too; a kind may have several layouts).
_LAYOUTS = (
    ("checkpoint", ("config.json", "*.safetensors")),
    ("checkpoint", ("adapter_config.json",)),  # a LoRA adapter (peft)
    ("checkpoint", ("config.json", SHARDS_METADATA)),  # FSDP shards only (`llmforge export` writes weights)
    ("tokens", ("index.json", "train")),
    ("dataset", ("data",)),
    ("classifier", ("model.bin",)),
    ("tokenizer", ("tokenizer.json",)),
    ("report", ("results.json",)),
)


def layout_kind(path: str | Path) -> str | None:
    """The kind an artifact directory looks like from its files, or None."""
    path = Path(path)
    for kind, patterns in _LAYOUTS:
        if all(any(path.glob(p)) for p in patterns):
            return kind
    return None


def _has_layout_of(path: Path, kind: str, *, partly: bool = False) -> bool:
    """Whether the files match one of `kind`'s layouts (with `partly`, hold any file of one)."""
    test = any if partly else all
    return any(test(any(path.glob(p)) for p in patterns) for k, patterns in _LAYOUTS if k == kind)


def _mismatch(kind: str, seen: str) -> str:
    return (
        f"manifest says kind={kind} but the layout looks like a {seen} (manifest.json edited or misplaced?)"
    )


def layout_mismatch(path: str | Path, kind: str) -> str | None:
    """For a stage reading an input: why its files are plainly another kind's than its manifest says
    (none of `kind`'s layouts, another kind's instead), or None."""
    path = Path(path)
    seen = layout_kind(path)
    if seen in (None, kind) or _has_layout_of(path, kind):
        return None
    return _mismatch(kind, seen)


def _check_kind(path: Path, kind: str) -> None:
    """The kind's own check, and that the files are not another kind's (an edited `kind`): a damaged
    artifact that still has some of its kind's files gets its kind's message, not a mismatch."""
    seen = layout_kind(path)
    check = _CHECKS.get(kind)
    try:
        if check is not None:
            check(path)
    except UserError:
        if seen not in (None, kind) and not _has_layout_of(path, kind, partly=True):
            raise UserError(_mismatch(kind, seen)) from None
        raise
    if seen not in (None, kind):
        raise UserError(_mismatch(kind, seen))


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


def _verify_hashes(path: Path, manifest: dict) -> None:
    """Rehash every file against the manifest: each file's own hash (names the file that changed), then
    the content hash over all of them (catches an edited `content_hash` and added files)."""
    from llmforge.artifacts import hash_files

    recorded = manifest.get("file_hashes") or {}
    if not recorded and not manifest.get("content_hash"):
        raise UserError("manifest.json records no hashes to verify against")
    whole, per_file = hash_files(path)
    for name, digest in recorded.items():
        if per_file.get(name) != digest:
            raise UserError(f"{name}: contents differ from manifest.json's hash (modified or corrupted)")
    if manifest.get("content_hash") != whole:
        raise UserError(
            f"content_hash in manifest.json is {manifest.get('content_hash')}, the files hash to {whole} "
            "(manifest edited, or files added or changed)"
        )


def check_artifact(path: str | Path, manifest: dict, *, verify: bool = False) -> str | None:
    """None when the artifact meets its contract (its kind's layout, files at their recorded sizes, and
    with `verify` every file's hash and, for tokens, every id), else why not."""
    from llmforge.artifacts import KINDS

    path = Path(path)
    kind = manifest["kind"]
    if kind not in KINDS:
        return f"manifest says kind={kind}, which is not an artifact kind ({', '.join(KINDS)})"
    try:
        _check_kind(path, kind)
        _check_files(path, manifest)
        if verify:
            if kind == "tokens":  # every id, not only the max_id index.json records (names the bad token)
                from llmforge.artifacts.tokens import validate_tokens

                validate_tokens(path, scan=True)
            _verify_hashes(path, manifest)
    except UserError as e:
        return str(e).removeprefix(f"{path}: ")
    return None
