"""Run another llmforge command in a child process: how one stage uses another's work without importing it
(DESIGN §1: stages share artifacts, never internals)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence


def run_llmforge(argv: Sequence[str]) -> subprocess.CompletedProcess:
    """`python -m llmforge ARGV` with this interpreter and environment: stdout (a `--json` document) captured
    as text, stderr left on ours so the user sees the child's progress and errors."""
    return subprocess.run(
        [sys.executable, "-m", "llmforge", *argv], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
