"""Finished runs as (N, D, loss) rows: from run directories (`RUN/reports/pretrain/results.json`, written by
`llmforge pretrain`: `params`, `tokens_seen`, `final_val_loss`) or from a JSON / CSV table of rows."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from llmforge.console import UserError

RUN_RESULTS = Path("reports") / "pretrain" / "results.json"
_KEYS = {
    "params": ("params", "N", "n"),
    "tokens": ("tokens_seen", "tokens", "D", "d"),
    "loss": ("final_val_loss", "loss", "L"),
}


@dataclass(frozen=True)
class Observation:
    name: str
    params: float
    tokens: float
    loss: float


def _row(source: str, name: str, row: dict) -> Observation:
    values = {}
    for field, keys in _KEYS.items():
        key = next((k for k in keys if k in row and row[k] not in (None, "")), None)
        if key is None:
            raise UserError(f"{source}: {name} has no {' / '.join(keys)}")
        try:
            value = float(row[key])
        except (TypeError, ValueError):
            raise UserError(f"{source}: {name}: {key} = {row[key]!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{source}: {name}: {key} = {row[key]!r}: expected a finite number > 0")
        values[field] = value
    return Observation(str(row.get("name", name)), **values)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def load_observations(paths: list[Path]) -> list[Observation]:
    """Rows from each path: a run directory, a `.json` file (a list of rows or {"runs": [...]}) or a `.csv`
    file with a header (params, tokens, loss, or the results.json names)."""
    rows: list[Observation] = []
    for path in paths:
        if path.is_dir():
            results = path / RUN_RESULTS
            if not results.is_file():
                raise UserError(f"{path}: no {RUN_RESULTS} (is it a finished `llmforge pretrain` run?)")
            data = _read_json(results)
            if not isinstance(data, dict):
                raise UserError(f"{results}: expected a JSON object")
            rows.append(_row(str(results), path.name, data))
        elif path.suffix == ".json" and path.is_file():
            data = _read_json(path)
            items = data.get("runs") if isinstance(data, dict) else data
            if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
                raise UserError(
                    f'{path}: expected a list of {{params, tokens, loss}} objects (or {{"runs": [...]}})'
                )
            rows += [_row(str(path), f"row {i + 1}", r) for i, r in enumerate(items)]
        elif path.suffix == ".csv" and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                rows += [_row(str(path), f"line {i + 2}", r) for i, r in enumerate(csv.DictReader(f))]
        else:
            raise UserError(f"{path}: not a run directory, .json or .csv file")
    return rows
