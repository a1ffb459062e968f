"""Masked LM (Devlin et al. 2019, BERT §3.1): predict the selected tokens of a window of seq_len tokens from
both sides. The selection and the 80/10/10 replacement are `masking.Masker`'s (transformers' collator),
seeded per window; the loss and accuracy are over the selected positions only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmforge.objectives.base import Batch, Objective
from llmforge.objectives.masking import Masker


class MaskedLM(Objective):
    name = "mlm"
    reports_accuracy = True

    def __init__(self, masker: Masker):
        self.masker = masker

    def make_batch(self, rows: np.ndarray, seeds: Sequence[Sequence[int]]) -> Batch:
        import torch

        inputs, labels = self.masker.mask(torch.from_numpy(rows), seeds)
        return Batch({"input_ids": inputs}, labels)

    def logits(self, model: Any, batch: Batch) -> Any:
        return model(**batch.inputs).logits
