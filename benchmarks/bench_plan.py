"""`llmforge plan` speed: the default sizing command end to end (subprocess, incl. interpreter start-up) and
in-process, plus a scaling-law fit on 28 synthetic runs."""

from __future__ import annotations

import contextlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = ["plan", "--compute", "1e21", "--json"]


def _subprocess_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "llmforge", *COMMAND], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def _in_process_s() -> float:
    from llmforge.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(COMMAND)
    return time.perf_counter() - start


def _fit_s(bootstrap: int) -> float:
    import numpy as np

    from llmforge.plan.fit import fit_scaling_law
    from llmforge.plan.scaling_laws import HOFFMANN_APPROACH3 as law

    params = np.array(
        [law.optimal_params(c) * f for c in (1e17, 1e18, 1e19, 1e20) for f in np.geomspace(0.25, 4, 7)]
    )
    tokens = np.repeat([1e17, 1e18, 1e19, 1e20], 7) / (6 * params)
    losses = law.loss(params, tokens) * np.exp(np.random.default_rng(0).normal(0, 0.002, len(params)))
    start = time.perf_counter()
    fit_scaling_law(params, tokens, losses, bootstrap=bootstrap)
    return time.perf_counter() - start


def run() -> dict:
    subprocess_runs = [_subprocess_s() for _ in range(5)]
    _in_process_s()  # first call pays the imports
    in_process_runs = [_in_process_s() for _ in range(20)]
    return {
        "command": "llmforge " + " ".join(COMMAND),
        "subprocess_median_s": round(statistics.median(subprocess_runs), 4),
        "subprocess_max_s": round(max(subprocess_runs), 4),
        "in_process_median_ms": round(1000 * statistics.median(in_process_runs), 3),
        "fit_28_runs_no_bootstrap_s": round(_fit_s(0), 3),
        "fit_28_runs_bootstrap_20_s": round(_fit_s(20), 3),
    }
