"""Batching helpers for supervised (finetune) examples: truncation, padding and packing.

Examples are lists of token ids with optional per-token labels (-100 = not trained on, the
PyTorch cross-entropy `ignore_index`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

IGNORE_INDEX = -100
Side = Literal["left", "right"]


def truncate(ids: Sequence[int], max_length: int, side: Side = "right") -> list[int]:
    """Keep `max_length` ids, dropping from the right (the usual) or from the left (keeps the end)."""
    if max_length < 1:
        raise ValueError("max_length must be ≥ 1")
    ids = list(ids)
    if len(ids) <= max_length:
        return ids
    return ids[:max_length] if side == "right" else ids[len(ids) - max_length :]


def pad_batch(
    examples: Sequence[Sequence[int]],
    pad_id: int,
    *,
    labels: Sequence[Sequence[int]] | None = None,
    padding: Literal["longest", "max_length"] = "longest",
    max_length: int | None = None,
    padding_side: Side = "right",
    truncation_side: Side = "right",
) -> dict[str, np.ndarray]:
    """Pad (and truncate to `max_length`, if given) into `input_ids`, `attention_mask` and `labels`.

    padding="longest" pads to the longest example (after truncation); "max_length" to `max_length`.
    Left padding is what batched generation needs (every row ends at its last real token).
    """
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length")
    if labels is None:
        labels = examples
    if len(labels) != len(examples):
        raise ValueError("labels and examples differ in number")
    rows, label_rows = [], []
    for ids, lab in zip(examples, labels, strict=True):
        if len(ids) != len(lab):
            raise ValueError("an example and its labels differ in length")
        if max_length is not None:
            ids, lab = truncate(ids, max_length, truncation_side), truncate(lab, max_length, truncation_side)
        rows.append(list(ids))
        label_rows.append(list(lab))
    width = max_length if padding == "max_length" else max((len(r) for r in rows), default=0)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    out_labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (ids, lab) in enumerate(zip(rows, label_rows, strict=True)):
        span = slice(0, len(ids)) if padding_side == "right" else slice(width - len(ids), width)
        input_ids[i, span] = ids
        out_labels[i, span] = lab
        mask[i, span] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": out_labels}


def pack_examples(
    examples: Sequence[Sequence[int]],
    max_length: int,
    pad_id: int,
    *,
    labels: Sequence[Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Pack short examples into rows of `max_length` by first-fit decreasing (no example is split;
    longer ones are truncated). `position_ids` restart at 0 for every example and `seq_ids` numbers the
    examples of a row (0 = padding), so attention can be kept inside each example."""
    if labels is None:
        labels = examples
    order = sorted(range(len(examples)), key=lambda i: -min(len(examples[i]), max_length))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = min(len(examples[i]), max_length)
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    shape = (len(bins), max_length)
    out = {
        "input_ids": np.full(shape, pad_id, dtype=np.int64),
        "labels": np.full(shape, IGNORE_INDEX, dtype=np.int64),
        "position_ids": np.zeros(shape, dtype=np.int64),
        "seq_ids": np.zeros(shape, dtype=np.int64),
    }
    for row, members in enumerate(bins):
        pos = 0
        for k, i in enumerate(members, 1):
            ids = list(examples[i])[:max_length]
            n = len(ids)
            out["input_ids"][row, pos : pos + n] = ids
            out["labels"][row, pos : pos + n] = list(labels[i])[:max_length]
            out["position_ids"][row, pos : pos + n] = np.arange(n)
            out["seq_ids"][row, pos : pos + n] = k
            pos += n
    return out
