"""SIGTERM (a scheduler's pre-emption) and SIGINT (Ctrl-C) as a flag a training loop checks between steps, so it
can checkpoint before it stops (shared by pretrain and finetune)."""

from __future__ import annotations

import signal
from typing import Any


class StopSignal:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the step and stops."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
