"""On-disk artifacts: the only thing stages share (DESIGN.md §2).

Every artifact is a directory with a `manifest.json`. This package writes and validates manifests, hashes
artifact contents, writes artifacts atomically, and holds the per-kind contracts (`dataset`, `tokens`, …) in
its submodules so a producer and a consumer read the same definition.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmforge import __version__
from llmforge.console import UserError

MANIFEST = "manifest.json"
# How long a build took is not part of what it holds: kept apart, out of the content hash, so building the
# same content again gives the same hash (and a resumed run can tell changed data from a rebuild).
TIMINGS = "timings.json"
KINDS = (
    "dataset",
    "classifier",
    "tokenizer",
    "tokens",
    "checkpoint",
    "report",
    "instructions",
    "preferences",
)

# Artifact paths inside a run directory (runs/<name>/...), DESIGN.md §2.
DATASET_DIR = "dataset"
TOKENIZER_DIR = "tokenizer"
TOKENS_DIR = "tokens"
CHECKPOINTS_DIR = "checkpoints"
REPORTS_DIR = "reports"

# Package versions recorded in every manifest's environment.
_TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "tokenizers",
    "datasets",
    "datatrove",
    "trl",
    "lm_eval",
    "peft",
    "safetensors",
    "numpy",
    "pydantic",
)


# ------------------------------------------------------------------------------------------ manifests


def environment() -> dict[str, Any]:
    """Python, platform, package versions, torch/CUDA (only if torch is already loaded) and git commit."""
    from importlib import metadata

    versions = {}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name.replace("_", "-"))
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_commit": git_commit(),
        "argv": sys.argv,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def git_commit() -> str | None:
    """The commit of the llmforge checkout (or None when not installed from a git tree)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _content_files(root: Path) -> list[tuple[str, Path]]:
    """(name, path) of every file of an artifact, sorted, manifest excluded; a plain file is its own content."""
    if root.is_file():
        return [(root.name, root)]
    return [
        (str(f.relative_to(root)), f) for f in sorted(root.rglob("*")) if f.is_file() and f.name != MANIFEST
    ]


def content_hash(path: str | Path) -> str:
    """sha256 over every file of an artifact (relative path + bytes), manifest and timings excluded."""
    return hash_files(path)[0]


def hash_files(path: str | Path) -> tuple[str, dict[str, str]]:
    """(content hash, {file: sha256 of its bytes}) in one read of the artifact, manifest and timings
    excluded; the per-file hashes let `inspect --verify` name the file that changed."""
    whole = hashlib.sha256()
    per_file: dict[str, str] = {}
    for name, f in _content_files(Path(path)):
        if name == TIMINGS:
            continue
        whole.update(name.encode() + b"\0")
        one = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                whole.update(chunk)
                one.update(chunk)
        per_file[name] = "sha256:" + one.hexdigest()
    return "sha256:" + whole.hexdigest(), per_file


def file_sizes(path: str | Path) -> dict[str, int]:
    """Byte size of every file of an artifact (manifest excluded): a cheap check for truncation."""
    return {name: f.stat().st_size for name, f in _content_files(Path(path))}


def input_ref(path: str | Path) -> dict[str, Any]:
    """How a manifest names one of its inputs: path, kind and content hash (taken from the input's own
    manifest when it has one, so hashing a many-GB input happens once, when it is written)."""
    p = Path(path)
    ref: dict[str, Any] = {"path": str(p.resolve())}
    m = p / MANIFEST
    if m.is_file():
        data = json.loads(m.read_text())
        ref["kind"] = data.get("kind")
        ref["content_hash"] = data.get("content_hash")
    elif p.exists():
        ref["kind"] = "file" if p.is_file() else "directory"
        ref["content_hash"] = content_hash(p)
    return ref


def write_manifest(
    directory: str | Path,
    kind: str,
    *,
    recipe: Mapping[str, Any] | None = None,
    inputs: Sequence[str | Path] = (),
    stats: Mapping[str, Any] | None = None,
    hash_content: bool = True,
) -> dict[str, Any]:
    """Write `manifest.json` into an artifact directory whose files are complete."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
    directory = Path(directory)
    whole, per_file = hash_files(directory) if hash_content else (None, {})
    manifest = {
        "kind": kind,
        "llmforge_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": dict(recipe or {}),
        "inputs": [input_ref(p) for p in inputs],
        "stats": dict(stats or {}),
        "environment": environment(),
        "content_hash": whole,
        "files": file_sizes(directory),
        "file_hashes": per_file,
    }
    write_json(directory / MANIFEST, manifest)
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    m = path / MANIFEST
    if not path.exists():
        raise UserError(f"{path}: no such artifact (path does not exist)")
    if not m.is_file():
        raise UserError(f"{path}: not an llmforge artifact (no {MANIFEST}; was it written completely?)")
    try:
        data = json.loads(m.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{m}: corrupt manifest ({e})") from None
    missing = [k for k in ("kind", "llmforge_version", "created_at", "inputs", "stats") if k not in data]
    if missing:
        raise UserError(f"{m}: manifest lacks {', '.join(missing)}")
    return data


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def require(path: str | Path, kind: str | Sequence[str]) -> dict[str, Any]:
    """Read an input artifact's manifest, or exit 2 if it is missing or of another kind."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    manifest = read_manifest(path)
    if manifest["kind"] not in kinds:
        expected = " or ".join(kinds)
        raise UserError(
            f"{path}: expected {_article(expected)} {expected} artifact, "
            f"found {_article(manifest['kind'])} {manifest['kind']} artifact"
        )
    from llmforge.artifacts.checks import layout_mismatch

    problem = layout_mismatch(path, manifest["kind"])
    if problem:
        raise UserError(f"{path}: {problem}")
    return manifest


def lineage(path: str | Path, _ancestors: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The artifact, its inputs, their inputs, … as a tree of {path, kind, created_at, inputs}."""
    p = Path(path).resolve()
    node: dict[str, Any] = {"path": str(p)}
    if str(p) in _ancestors:
        node["cycle"] = True
        return node
    try:
        m = read_manifest(p)
    except UserError:
        node["kind"] = "missing" if not p.exists() else ("file" if p.is_file() else "directory")
        return node
    node.update(kind=m["kind"], created_at=m["created_at"], content_hash=m.get("content_hash"))
    node["inputs"] = [lineage(ref["path"], _ancestors | {str(p)}) for ref in m.get("inputs", [])]
    return node


# --------------------------------------------------------------------------------------- atomic writes


def ensure_writable(path: str | Path, *, directory: bool = True) -> Path:
    """Check, before any work starts, that an output can be written at `path` (a directory, or a file
    with `directory=False`): UserError naming the path otherwise. Creates nothing that stays behind.

    Finds the nearest folder that exists on the way to `path` and writes (then removes) a probe file
    there, so a read-only disk or a file standing where a folder must go is found now, not at the end."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        want, found = ("a directory", "a file") if directory else ("a file", "a directory")
        raise UserError(f"{path}: the output must be {want}, but {found} is already there")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{path}: cannot write the output: {ancestor} is a file, not a directory")
    # the folder that receives the output (atomic writes rename a sibling into it), and the output
    # folder itself when it exists (stages that add files inside it)
    for folder in {ancestor, *([path] if path.is_dir() else [])}:
        _probe_write(path, folder)
    return path


def _probe_write(path: Path, folder: Path) -> None:
    probe = folder / f".llmforge-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"{path}: cannot write the output in {folder} ({e.strerror or e})") from None


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file + fsync + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary sibling name and rename it into place when the block ends.

    On an exception the temporary directory is removed and an existing `path` is left untouched, so a
    crash leaves either the old artifact or nothing — never a half-written one that looks whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_abandoned_temporaries(path: Path) -> None:
    """Delete `path`'s temporary siblings left by processes that are gone (a build killed with SIGKILL leaves
    one behind); a live process's build in progress is kept."""
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        pid = leftover.name.removeprefix(f".{path.name}.tmp-").split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_temporaries(parent: str | Path) -> list[Path]:
    """Leftovers of interrupted atomic writes in `parent` (safe to delete)."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return [
        p for p in parent.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)
    ]
