"""Labelled examples for classification: reading jsonl rows, the label set, the held-out split.

Every problem with a file is a `UserError` naming the file and the row (1-based line number)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from llmforge.console import UserError

Label = str | int


@dataclass(frozen=True)
class Example:
    text: str
    label: Label
    row: int  # line number in its file (1-based), for messages


def read_examples(path: str | Path, text_field: str, label_field: str, key: str) -> list[Example]:
    """The rows of a jsonl file (the recipe's `key`); blank lines are skipped. Labels are all strings or all
    integers."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}: {path}: no such file (expected a jsonl file of labelled texts)")
    examples: list[Example] = []
    with open(path, "rb") as f:
        for row, raw in enumerate(f, 1):
            line = _decode(raw, path, row)
            if line.strip():
                examples.append(_example(line, path, row, text_field, label_field))
    if not examples:
        raise UserError(f"{path}: empty file (expected one JSON object per line)")
    _check_label_types(examples, path)
    return examples


def _decode(raw: bytes, path: Path, row: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}:{row}: not UTF-8 text") from None


def _example(line: str, path: Path, row: int, text_field: str, label_field: str) -> Example:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{row}: not a JSON object ({e.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}:{row}: not a JSON object")
    text = obj.get(text_field)
    if not isinstance(text, str):
        raise UserError(f"{path}:{row}: the row lacks a string field '{text_field}' (finetune.text_field)")
    label = obj.get(label_field)
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise UserError(
            f"{path}:{row}: the row lacks a string or integer field '{label_field}' (finetune.label_field)"
        )
    return Example(text, label, row)


def _check_label_types(examples: list[Example], path: Path) -> None:
    kind = type(examples[0].label)
    for ex in examples:
        if type(ex.label) is not kind:
            raise UserError(
                f"{path}:{ex.row}: label {ex.label!r} is a {type(ex.label).__name__}, row {examples[0].row}'s "
                f"is a {kind.__name__}; use one type for every label"
            )


def label_names(train: list[Example], path: str | Path) -> list[Label]:
    """The sorted labels of the train rows; at least two, or there is nothing to classify."""
    labels = sorted({ex.label for ex in train})  # type: ignore[type-var]
    if len(labels) < 2:
        raise UserError(
            f"{path}: every row has the label {labels[0]!r}; classification needs at least two classes"
        )
    return labels


def check_val_labels(val: list[Example], labels: list[Label], path: str | Path) -> None:
    known = set(labels)
    for ex in val:
        if ex.label not in known:
            raise UserError(
                f"{path}:{ex.row}: label {ex.label!r} does not occur in the train rows "
                f"(labels there: {', '.join(map(repr, labels))})"
            )


def split_off_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, val): a seeded shuffle, then `fraction` of the rows (at least one) held out."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * fraction))
    if n_val >= len(examples):
        raise UserError(f"{len(examples)} rows are too few to hold out a validation split; give val_file")
    held = set(order[:n_val])
    return (
        [ex for i, ex in enumerate(examples) if i not in held],
        [ex for i, ex in enumerate(examples) if i in held],
    )
