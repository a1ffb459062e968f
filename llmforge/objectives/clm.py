"""Causal LM: predict every next token of a window of seq_len + 1 tokens (Radford et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmforge.objectives.base import Batch, Objective


class CausalLM(Objective):
    name = "clm"
    overlap = 1  # a window's last token is the target of its last input, and the next window's first input

    def fixed_targets_per_row(self, seq_len: int) -> int:
        return seq_len

    def make_batch(self, rows: np.ndarray, seeds: Sequence[Sequence[int]]) -> Batch:
        import torch

        ids = torch.from_numpy(rows)
        return Batch({"input_ids": ids[:, :-1]}, ids[:, 1:])

    def logits(self, model: Any, batch: Batch) -> Any:
        return model(**batch.inputs, use_cache=False).logits
