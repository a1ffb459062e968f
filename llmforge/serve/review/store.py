"""The review store: one SQLite file (`<out>/review.sqlite`, write-ahead log) holding the items and every
label and rating, with the files the other stages read written from it after each submission.

Several people label at once: each submission is one transaction under one lock, a person's label of an
item is a row keyed by (item, person) — submitting again replaces it, so a double click never makes two
rows — and the exports are rewritten whole to a temporary name and renamed, so a reader never sees half a
file. A submission returns only once it is committed: a restart loses nothing already acknowledged.

Exports in `<out>/`:
  preferences.jsonl        one row per A/B decision (ties and skips are kept in the store only): `prompt` (the
                           user's text, or the conversation as messages), `chosen`, `rejected`, `labeller`,
                           `model_chosen`, `model_rejected`, `reason`, `item`, `source`, `labelled_at` — the
                           `pairs` format `[[rlhf.preferences]]` reads
  ratings/<reviewer>.csv   id (`sheet.csv:ROW_ID`: two sheets may share row ids), prompt, output, rating,
                           comment (the reasoning), correction — the sheets `llmforge eval ratings` aggregates
                           (one file per reviewer)
  summary.json             counts per person, and agreement where several labelled the same items
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from llmforge.agreement import krippendorff_alpha, percent_agreement
from llmforge.console import UserError
from llmforge.serve.review.items import Item

DB = "review.sqlite"
PREFERENCES = "preferences.jsonl"
RATINGS = "ratings"
SUMMARY = "summary.json"
CHOICES = ("a", "b", "tie", "skip")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, position INTEGER NOT NULL, source TEXT NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    item TEXT NOT NULL REFERENCES items(id), labeller TEXT NOT NULL, choice TEXT NOT NULL, reason TEXT NOT NULL,
    left TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (item, labeller)
);
CREATE TABLE IF NOT EXISTS ratings (
    item TEXT NOT NULL REFERENCES items(id), reviewer TEXT NOT NULL, rating INTEGER NOT NULL,
    correction TEXT NOT NULL, reasoning TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (item, reviewer)
);
"""


class InvalidSubmission(ValueError):
    """A submission the store refuses (unknown item, bad name or choice); the route answers 400."""


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidSubmission(
            f"{what} {name!r}: use 1-40 letters, digits, '.', '_' or '-' (it names the person's ratings file)"
        )
    return name


class ReviewStore:
    def __init__(self, out: Path, *, rating_scale: tuple[int, int] = (1, 5)):
        self.out = out
        self.scale = rating_scale
        self._lock = threading.RLock()  # one connection, one writer at a time; summary() runs inside label()
        try:
            out.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(out / DB, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.DatabaseError) as e:
            raise UserError(f"{out / DB}: cannot open the review store ({e})") from None

    # ------------------------------------------------------------------------------------------ items

    def add_items(self, items: list[Item]) -> int:
        """Add the items not already stored (by id), after the ones already there; the number added."""
        with self._lock, self._tx():
            start = self._db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM items").fetchone()[0]
            added = 0
            for item in items:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?)",
                    (
                        item.id,
                        item.kind,
                        start + added,
                        item.source,
                        json.dumps(item.data, ensure_ascii=False),
                    ),
                )
                added += cur.rowcount
        return added

    def has(self, item_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is not None

    def count(self, kind: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM items WHERE kind = ?", (kind,)).fetchone()[0]

    def next_item(self, kind: str, person: str) -> dict[str, Any]:
        """The first item of `kind` this person has not judged yet (in input order), with their progress."""
        check_name(person)
        table, who = ("labels", "labeller") if kind == "pair" else ("ratings", "reviewer")
        with self._lock:
            total = self.count(kind)
            done = self._db.execute(
                f"SELECT COUNT(*) FROM {table} t JOIN items i ON i.id = t.item WHERE i.kind = ? AND t.{who} = ?",
                (kind, person),
            ).fetchone()[0]
            row = self._db.execute(
                f"SELECT id, source, data, position FROM items WHERE kind = ? AND id NOT IN "
                f"(SELECT item FROM {table} WHERE {who} = ?) ORDER BY position LIMIT 1",
                (kind, person),
            ).fetchone()
        out: dict[str, Any] = {"total": total, "done": done}
        if row is None:
            return {**out, "item": None}
        item_id, source, data, position = row
        data = json.loads(data)
        if kind == "pair":  # which reply is shown on the left: fixed per (item, person), half the time each
            left = "a" if hashlib.sha256(f"{item_id}:{person}".encode()).digest()[0] % 2 == 0 else "b"
            right = "b" if left == "a" else "a"
            shown = {
                "left": {"key": left, "text": data[left]["text"]},
                "right": {"key": right, "text": data[right]["text"]},
            }
            return {**out, "item": {"id": item_id, "source": source, "prompt": data["prompt"],
                                    "messages": data.get("messages"), **shown}}  # fmt: skip
        return {**out, "item": {"id": item_id, "source": source, **data}}

    # ------------------------------------------------------------------------------------------ submissions

    def label(self, item_id: str, labeller: str, choice: str, reason: str = "", left: str = "a") -> dict:
        check_name(labeller, "labeller")
        if choice not in CHOICES:
            raise InvalidSubmission(f"choice {choice!r}: expected one of {', '.join(CHOICES)}")
        if left not in ("a", "b"):
            raise InvalidSubmission(f"left {left!r}: expected a or b")
        with self._lock:
            self._require(item_id, "pair")
            with self._tx():
                self._db.execute(
                    "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (item, labeller) DO UPDATE SET "
                    "choice = excluded.choice, reason = excluded.reason, left = excluded.left, at = excluded.at",
                    (item_id, labeller, choice, str(reason or "")[:4000], left, time.time()),
                )
            self._export_preferences()
            self._export_summary()
        return {"ok": True}

    def rate(
        self, item_id: str, reviewer: str, rating: Any, correction: str = "", reasoning: str = ""
    ) -> dict:
        check_name(reviewer, "reviewer")
        low, high = self.scale
        if isinstance(rating, bool) or not isinstance(rating, int) or not low <= rating <= high:
            raise InvalidSubmission(f"rating {rating!r}: expected a whole number from {low} to {high}")
        with self._lock:
            self._require(item_id, "sample")
            with self._tx():
                self._db.execute(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (item, reviewer) DO UPDATE SET "
                    "rating = excluded.rating, correction = excluded.correction, reasoning = excluded.reasoning, "
                    "at = excluded.at",
                    (
                        item_id,
                        reviewer,
                        rating,
                        str(correction or "")[:20000],
                        str(reasoning or "")[:20000],
                        time.time(),
                    ),
                )
            self._export_ratings(reviewer)
            self._export_summary()
        return {"ok": True}

    def _require(self, item_id: str, kind: str) -> None:
        row = self._db.execute("SELECT kind FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None or row[0] != kind:
            raise InvalidSubmission(
                f"item {item_id!r}: no such {'pair' if kind == 'pair' else 'sample'} here"
            )

    def _tx(self):
        return _Transaction(self._db)

    # ------------------------------------------------------------------------------------------ exports

    def preference_rows(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT l.item, l.labeller, l.choice, l.reason, l.at, i.source, i.data FROM labels l "
            "JOIN items i ON i.id = l.item WHERE l.choice IN ('a', 'b') ORDER BY l.at, l.labeller"
        ).fetchall()
        out = []
        for item, labeller, choice, reason, at, source, data in rows:
            data = json.loads(data)
            won, lost = data[choice], data["b" if choice == "a" else "a"]
            prompt = data["messages"] or data["prompt"]
            out.append({"prompt": prompt, "chosen": won["text"], "rejected": lost["text"], "labeller": labeller,
                        "model_chosen": won["model"], "model_rejected": lost["model"], "reason": reason,
                        "item": item, "source": source, "labelled_at": _iso(at)})  # fmt: skip
        return out

    def _export_preferences(self) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.preference_rows())
        _atomic_write(self.out / PREFERENCES, text)

    def _export_ratings(self, reviewer: str) -> None:
        rows = self._db.execute(
            "SELECT i.source, i.data, r.rating, r.correction, r.reasoning FROM ratings r JOIN items i ON i.id = r.item "
            "WHERE r.reviewer = ? ORDER BY i.position",
            (reviewer,),
        ).fetchall()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["id", "prompt", "output", "rating", "comment", "correction"])
        for source, data, rating, correction, reasoning in rows:
            d = json.loads(data)
            writer.writerow(
                [f"{source}:{d['sheet_id']}", d["prompt"], d["output"], rating, reasoning, correction]
            )
        _atomic_write(self.out / RATINGS / f"{reviewer}.csv", buffer.getvalue())

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        per_labeller = dict(
            self._db.execute("SELECT labeller, COUNT(*) FROM labels GROUP BY labeller ORDER BY labeller")
        )
        choices = dict(self._db.execute("SELECT choice, COUNT(*) FROM labels GROUP BY choice"))
        per_reviewer = dict(
            self._db.execute("SELECT reviewer, COUNT(*) FROM ratings GROUP BY reviewer ORDER BY reviewer")
        )
        units = _units(self._db.execute("SELECT item, choice FROM labels WHERE choice != 'skip'").fetchall())
        rating_units = _units(self._db.execute("SELECT item, rating FROM ratings").fetchall())
        return {
            "pairs": {"items": self.count("pair"), "labels": sum(per_labeller.values()), "per_labeller": per_labeller,
                      "choices": {c: choices.get(c, 0) for c in CHOICES}, "agreement": _agreement(units, "nominal")},
            "samples": {"items": self.count("sample"), "ratings": sum(per_reviewer.values()),
                        "per_reviewer": per_reviewer, "agreement": _agreement(rating_units, "interval")},
        }  # fmt: skip

    def _export_summary(self) -> None:
        _atomic_write(self.out / SUMMARY, json.dumps(self.summary(), indent=2) + "\n")

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _units(rows: list[tuple[str, Any]]) -> list[list[Any]]:
    by_item: dict[str, list[Any]] = {}
    for item, value in rows:
        by_item.setdefault(item, []).append(value)
    return [v for v in by_item.values() if len(v) >= 2]


def _agreement(units: list[list[Any]], level: str) -> dict[str, Any]:
    """Agreement over the items judged by two people or more (ties count as a label; skips do not)."""
    if not units:
        return {"items": 0}
    alpha = krippendorff_alpha(units, level)
    return {"items": len(units), "percent": percent_agreement(units), "krippendorff_alpha": alpha}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
