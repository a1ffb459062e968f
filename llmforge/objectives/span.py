"""Span corruption (Raffel et al. 2020, T5 §3.1.4): the encoder reads a window with noise spans replaced by
sentinels, the decoder writes the spans back after their sentinels. Windows hold the raw tokens that corrupt
to exactly seq_len encoder tokens, so packed examples fill the context (`SpanCorruption.lengths`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmforge.objectives.base import Batch, Objective
from llmforge.objectives.span_corruption import SpanCorruption


class SpanCorruptionObjective(Objective):
    name = "span-corruption"
    reports_accuracy = True

    def __init__(
        self, corruption: SpanCorruption, *, sentinel_ids: Sequence[int], eos_id: int, decoder_start_id: int
    ):
        self.corruption = corruption
        self.sentinel_ids, self.eos_id, self.decoder_start_id = list(sentinel_ids), eos_id, decoder_start_id

    def window_length(self, seq_len: int) -> int:
        return self.corruption.lengths(seq_len)[0]

    def target_length(self, seq_len: int) -> int:
        return self.corruption.lengths(seq_len)[1]

    def fixed_targets_per_row(self, seq_len: int) -> int:
        return self.target_length(seq_len)

    def make_batch(self, rows: np.ndarray, seeds: Sequence[Sequence[int]]) -> Batch:
        import torch

        inputs, targets = self.corruption.batch(rows, seeds, self.sentinel_ids, self.eos_id)
        targets = torch.from_numpy(targets)
        # Teacher forcing: the decoder reads the targets shifted right behind its start token (T5: pad).
        start = torch.full((len(targets), 1), self.decoder_start_id, dtype=targets.dtype)
        decoder_inputs = torch.cat([start, targets[:, :-1]], dim=1)
        return Batch({"input_ids": torch.from_numpy(inputs), "decoder_input_ids": decoder_inputs}, targets)

    def logits(self, model: Any, batch: Batch) -> Any:
        return model(**batch.inputs, use_cache=False).logits
