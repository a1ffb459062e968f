"""Loss-spike / divergence detection, shared by the training loops (pretrain, rlhf ppo): a step is a spike
when its loss is non-finite or exceeds the running mean of recent accepted losses by `sigma` standard
deviations."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol


class GuardSettings(Protocol):
    """What the guard reads from a recipe table (pretrain's `[train.spike]`, rlhf's `[rlhf.ppo.spike]`)."""

    enabled: bool
    sigma: float
    window: int
    min_history: int


@dataclass(frozen=True)
class Verdict:
    spike: bool
    reason: str = ""


class SpikeGuard:
    def __init__(self, cfg: GuardSettings, history: list[float] = ()):
        self.cfg = cfg
        self.history: deque[float] = deque(history, maxlen=cfg.window)

    def check(self, loss: float) -> Verdict:
        """Judge one step's loss against the running window (`accept` adds it once the update is
        applied). A non-finite loss is always a spike (with the guard off the trainer stops on it)."""
        if not math.isfinite(loss):
            return Verdict(True, f"non-finite loss {loss}")
        if not self.cfg.enabled:
            return Verdict(False)
        if len(self.history) >= self.cfg.min_history:
            n = len(self.history)
            mean = sum(self.history) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in self.history) / (n - 1))
            # A floor on std keeps a flat, noise-free loss curve from turning tiny wiggles into spikes.
            limit = mean + self.cfg.sigma * max(std, 1e-3 * abs(mean), 1e-6)
            if loss > limit:
                return Verdict(True, f"loss {loss:.4f} > mean {mean:.4f} + {self.cfg.sigma:g}·std {std:.4f}")
        return Verdict(False)

    def accept(self, loss: float) -> None:
        """Add the loss of an applied update to the window (after `check` and `check_grad_norm` passed:
        a dropped step must not move the running mean and std)."""
        self.history.append(loss)

    def check_grad_norm(self, grad_norm: float) -> Verdict:
        """A finite loss can still have an overflowing gradient; applying it would spoil every weight."""
        if not math.isfinite(grad_norm):
            return Verdict(True, f"non-finite gradient norm {grad_norm}")
        return Verdict(False)
