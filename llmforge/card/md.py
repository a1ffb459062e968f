"""Markdown pieces shared by the model card and the report card: tables, numbers, the mark of a section only a
person can write."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# Greppable: every place the card cannot fill from the run's records says this.
PERSON = "TODO (to be written by a person)"


def person(what: str) -> str:
    """A block only a person can write: what belongs there, marked so it cannot pass for a finished card."""
    return f"> **{PERSON}:** {what}\n"


def num(v: Any, digits: int = 4) -> str:
    """A number as a table shows it: ints with thousands separators, floats to `digits` significant digits."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e7 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:,.{digits}g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def big(v: float | int | None) -> str:
    """A large count in words people read (1.23M, 4.5e18 stays scientific)."""
    if v is None:
        return "—"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale and abs(v) < 1e15:
            return f"{v / scale:.3g}{suffix}"
    return num(v)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += [
        "| " + " | ".join(cell if isinstance(cell, str) else num(cell) for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines) + "\n"


def kv(rows: dict[str, Any]) -> str:
    """A two-column table of the rows whose value is known."""
    return table(
        ("", ""), [(k, v if isinstance(v, str) else num(v)) for k, v in rows.items() if v is not None]
    )


def not_run(stage: str, how: str) -> str:
    return f"*Not run: this run has no {stage}* ({how}).\n"


def ci(lo: Any, hi: Any) -> str:
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return f"[{num(float(lo))}, {num(float(hi))}]"
    return "—"


def classifier_line(q: dict) -> str:
    """One line on a classifier the run trained (`facts.classifier_facts`): what a positive means and its
    held-out precision, recall, F1 and ROC AUC."""
    h = q["heldout"]
    positive = f" (positive: {q['positive']})" if q.get("positive") else ""
    auc = f", ROC AUC {num(h['roc_auc'])}" if "roc_auc" in h else ""
    return (
        f"Classifier `{q['artifact']}`{positive}: held-out precision {num(h.get('precision'))}, "
        f"recall {num(h.get('recall'))}, F1 {num(h.get('f1'))}{auc}.\n"
    )
