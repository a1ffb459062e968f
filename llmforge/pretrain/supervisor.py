"""`--max-restarts K`: run training in a child process and relaunch it from the latest checkpoint when
it dies of anything but a user error or a stop signal (a crashed GPU, a lost node, an OOM killer)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from llmforge.console import EXIT_USAGE, UserError, info, warn

# Exit codes after which relaunching cannot help or was not wanted.
FINAL_CODES = {0, EXIT_USAGE, 128 + 2, 128 + 15}


def refuse_under_launcher(environ: Mapping[str, str]) -> None:
    """Under torchrun each rank would supervise its own child: one rank's crash restarts that rank alone
    while the others wait for it in a collective forever. torchrun restarts all ranks together."""
    world = int(environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise UserError(
            f"--max-restarts supervises a single process, but this is one of {world} processes "
            f"(WORLD_SIZE={world}); drop it and give torchrun its own --max-restarts K, which restarts every "
            f"rank together"
        )


def run_with_restarts(args: list[str], max_restarts: int) -> int:
    """Run `python -m llmforge ARGS`; after a crash relaunch it (it resumes from the newest checkpoint by
    itself), at most `max_restarts` times."""
    command = [sys.executable, "-m", "llmforge", *args]
    attempt = 0
    while True:
        rc = subprocess.call(command)
        if rc in FINAL_CODES or attempt >= max_restarts:
            return rc
        attempt += 1
        warn(f"training exited with code {rc}; restart {attempt}/{max_restarts} from the latest checkpoint")
        info(" ".join(command))
