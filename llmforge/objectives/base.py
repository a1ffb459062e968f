"""What every objective gives the training loop and evaluation: its windows over a token stream, the model
inputs and labels of a batch of windows, and the loss of each row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llmforge.artifacts.tokens import TokenShards, TokenWindows

if TYPE_CHECKING:
    import torch

IGNORE = -100  # label of a position that is not scored (the convention of torch's cross_entropy and HF)
TRAIN_STREAM, VAL_STREAM = 0, 1  # seeds of per-window randomness: (run seed, stream, window position)


@dataclass
class Batch:
    """Model inputs (keyword arguments of the forward) and the labels scored against its logits."""

    inputs: dict[str, Any]
    labels: Any  # int64 (rows, target length); IGNORE where nothing is scored

    def to(self, device: Any) -> Batch:
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))

    def targets_per_row(self) -> Any:
        return (self.labels != IGNORE).sum(dim=1)


@dataclass
class RowLosses:
    nll: Any  # (rows,) summed cross-entropy of each row's scored positions, nats
    correct: Any | None = (
        None  # (rows,) scored positions predicted right (argmax), when the objective reports it
    )


class Objective:
    """Base: subclasses set `name`, `overlap`, and implement `make_batch` and `logits`."""

    name = ""
    overlap = 0  # tokens a window shares with the next one
    reports_accuracy = False

    def window_length(self, seq_len: int) -> int:
        """Tokens of the stream one example consumes (before `overlap`)."""
        return seq_len

    def target_length(self, seq_len: int) -> int:
        """Decoder positions per example (encoder–decoder objectives; FLOPs count them)."""
        return seq_len

    def fixed_targets_per_row(self, seq_len: int) -> int | None:
        """Scored positions per row when every row has the same number (no collective needed to count)."""
        return None

    def windows(self, shards: TokenShards, seq_len: int, seed: int, *, shuffle: bool) -> TokenWindows:
        return TokenWindows(
            shards, self.window_length(seq_len), seed=seed, shuffle=shuffle, overlap=self.overlap
        )

    def make_batch(self, rows: np.ndarray, seeds: Sequence[Sequence[int]]) -> Batch:
        raise NotImplementedError

    def logits(self, model: Any, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def row_losses(self, model: Any, batch: Batch) -> RowLosses:
        import torch.nn.functional as F

        logits = self.logits(model, batch)
        labels = batch.labels
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none"
        ).view_as(labels)
        correct = None
        if self.reports_accuracy:
            correct = ((logits.argmax(dim=-1) == labels) & (labels != IGNORE)).sum(dim=1)
        return RowLosses(nll.sum(dim=1), correct)


def window_seeds(seed: int, stream: int, positions: Sequence[int]) -> list[list[int]]:
    """The seed of each window's own randomness (masks, spans): a function of its position only, so a resumed
    run, a DDP rank and one process draw the same examples."""
    return [[seed, stream, int(p)] for p in positions]
