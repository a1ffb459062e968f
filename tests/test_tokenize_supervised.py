"""Supervised batching helpers: truncation, left/right padding, longest/max_length, packing."""

from __future__ import annotations

import numpy as np
import pytest

from llmforge.tokenizer.supervised import IGNORE_INDEX, pack_examples, pad_batch, truncate

PAD = 0


def test_truncate_keeps_the_requested_end():
    assert truncate([1, 2, 3, 4], 2, "right") == [1, 2]
    assert truncate([1, 2, 3, 4], 2, "left") == [3, 4]
    assert truncate([1, 2], 5) == [1, 2]


def test_right_padding_to_longest():
    out = pad_batch([[5, 6, 7], [8]], PAD)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[5, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_left_padding_to_max_length_with_left_truncation_and_labels():
    out = pad_batch(
        [[1, 2, 3, 4, 5], [6]],
        PAD,
        labels=[[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [6]],
        padding="max_length",
        max_length=4,
        padding_side="left",
        truncation_side="left",
    )
    assert out["input_ids"].tolist() == [[2, 3, 4, 5], [PAD, PAD, PAD, 6]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 0, 1]]
    assert out["labels"].tolist() == [[IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 6]]


def test_padding_errors():
    with pytest.raises(ValueError, match="max_length"):
        pad_batch([[1]], PAD, padding="max_length")
    with pytest.raises(ValueError, match="differ in length"):
        pad_batch([[1, 2]], PAD, labels=[[1]])


def test_packing_fits_every_example_once_with_restarting_positions():
    rng = np.random.default_rng(0)
    examples = [list(rng.integers(1, 100, size=n)) for n in (7, 3, 5, 2, 8, 1, 4)]
    out = pack_examples(examples, max_length=8, pad_id=PAD)
    assert out["input_ids"].shape[1] == 8
    assert len(out["input_ids"]) == 4  # 30 tokens need at least 4 rows of 8; first-fit decreasing finds 4
    recovered = []
    for row, seq, pos in zip(out["input_ids"], out["seq_ids"], out["position_ids"], strict=True):
        for k in range(1, seq.max() + 1):
            span = seq == k
            recovered.append(row[span].tolist())
            assert pos[span].tolist() == list(range(span.sum()))
        assert (row[seq == 0] == PAD).all()
    assert sorted(recovered) == sorted([list(map(int, e)) for e in examples])
    assert (out["labels"][out["seq_ids"] == 0] == IGNORE_INDEX).all()


def test_packing_truncates_overlong_examples():
    out = pack_examples([[1] * 10, [2, 2]], max_length=4, pad_id=PAD)
    assert out["input_ids"].tolist() == [[1, 1, 1, 1], [2, 2, PAD, PAD]]
