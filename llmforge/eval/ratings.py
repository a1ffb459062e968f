"""Aggregating filled-in review sheets: mean, distribution, and agreement between raters (Krippendorff's
alpha, llmforge/agreement.py: any number of raters, missing ratings allowed).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from llmforge.agreement import krippendorff_alpha
from llmforge.console import UserError


@dataclass
class Ratings:
    """Ratings per item (id) per rater; None where a rater left an item unrated."""

    raters: list[str]
    items: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def values(self) -> list[float]:
        return [v for per_rater in self.items.values() for v in per_rater.values() if v is not None]


def _parse(value: str, where: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where}: rating {value!r} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{where}: rating {value!r} is not a finite number")
    return number


def read_sheets(paths: list[Path]) -> Ratings:
    """Each sheet is one rater (named by its file stem) unless it has several `rating…` columns, one per rater."""
    ratings = Ratings(raters=[])
    for path in paths:
        _read_sheet(path, ratings)
    if not ratings.values():
        raise UserError(f"{', '.join(map(str, paths))}: no ratings filled in")
    return ratings


def _read_sheet(path: Path, ratings: Ratings) -> None:
    if not path.is_file():
        raise UserError(f"{path}: no such sheet")
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets often save UTF-8 with a byte-order mark
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e}); save the sheet as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c for c in reader.fieldnames or [] if c.lower().startswith("rating")]
    if "id" not in (reader.fieldnames or []) or not columns:
        raise UserError(f"{path}: a review sheet needs an 'id' column and at least one 'rating' column")
    names = {c: path.stem if len(columns) == 1 else f"{path.stem}:{c}" for c in columns}
    ratings.raters += names.values()
    for row in reader:
        per_rater = ratings.items.setdefault(row["id"], {})
        for c, rater in names.items():
            per_rater[rater] = _parse(row[c] or "", f"{path}:{reader.line_num}")


def summarize(ratings: Ratings, level: str = "interval") -> dict:
    values = ratings.values()
    summary = {
        "items": len(ratings.items),
        "raters": ratings.raters,
        "ratings": len(values),
        "mean": sum(values) / len(values),
        "distribution": {format(k, "g"): c for k, c in sorted(Counter(values).items())},
        "per_rater_mean": {
            r: sum(vs) / len(vs)
            for r in ratings.raters
            if (vs := [u[r] for u in ratings.items.values() if u.get(r) is not None])
        },
    }
    if len(ratings.raters) > 1:
        units = [[v for v in u.values() if v is not None] for u in ratings.items.values()]
        summary["krippendorff_alpha"] = krippendorff_alpha(units, level)
        summary["alpha_level"] = level
    return summary
