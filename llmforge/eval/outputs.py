"""Checks that an eval command can write its outputs, made before any model is loaded or any text generated."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llmforge.console import UserError


def _writable_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` is a directory in which a file can be created."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write under {parent} ({e.strerror or e})") from None


def report_dir(path: Path, *, force: bool, flag: str = "--out") -> None:
    """A report artifact can be written at `path`; an existing one is replaced only with --force."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file; a report is a directory")
    if path.exists() and not force:
        raise UserError(
            f"{flag} {path}: a report already exists; pass --force to replace it, or another --out"
        )
    _writable_parent(path, flag)


def file(path: Path, *, flag: str = "--out", example: str = "out.csv", force: bool = True) -> None:
    """A file can be written at `path` (it is not a directory and its folder is writable); with force=False
    an existing file is refused."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file path, e.g. {path / example}")
    if path.exists() and not force:
        raise UserError(f"{flag} {path}: already exists; pass --force to replace it, or another {flag}")
    _writable_parent(path, flag)


def directory(path: Path, *, flag: str) -> None:
    """Files can be written into the directory `path` (created if missing)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a directory")
    _writable_parent(path / "x", flag)
