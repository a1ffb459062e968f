"""Rows of a UTF-8 data file, each with the `file:line` a user error names: shared by the stages that read
public dataset files (the eval stage's offline tasks, the bias probes)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from llmforge.console import UserError

Row = dict[str, Any]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None


def jsonl_rows(path: Path) -> list[tuple[str, Row]]:
    """(`file:line`, row) for every JSON object line of `path`."""
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON line ({e})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object, found {type(row).__name__}")
            rows.append((f"{path}:{n}", row))
    return rows


def csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[tuple[str, Row]]]:
    """The header and (`file:line`, row) for every data row of a CSV file with a header line (cells beyond
    the header's columns under the key None, as `csv.DictReader` leaves them)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    header = list(reader.fieldnames or [])
    return header, [(f"{path}:{reader.line_num}", row) for row in reader]
