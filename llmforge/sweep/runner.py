"""One run of a stage for a sweep trial or an ablation cell: its recipe written into its own run directory,
the stage started as a child process, its val-loss curve followed while it trains, and a stop on request
(SIGTERM: the stage saves a checkpoint and exits, so a stopped run keeps its artifacts and can resume).

A run directory holds `run.toml` (the whole recipe as run: base recipe, overrides, the trial's values, the
run directory itself), `log.txt` (the child's stderr) and `result.json` (its --json results, written only
when it finished), besides the stage's own outputs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.artifacts import write_json
from llmforge.console import UserError
from llmforge.sweep.stages import Curve, Stage

RUN_RECIPE = "run.toml"
RESULT = "result.json"
LOG = "log.txt"
POLL_S = 0.5
STOP_GRACE_S = 300  # a stopped stage writes its checkpoint first


@dataclass
class RunOutcome:
    state: str  # complete | stopped | failed
    results: dict[str, Any] | None
    curve: dict[int, float] = field(default_factory=dict)
    returncode: int = 0
    seconds: float = 0.0
    reason: str = ""


def toml_literal(value: Any) -> str:
    """`value` as the right-hand side of a `--set` item (a TOML literal, so "1e-3" stays text, 1e-3 a float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def set_items(values: dict[str, Any]) -> list[str]:
    return [f"{key}={toml_literal(value)}" for key, value in values.items()]


def run_recipe(base: Path, overrides: list[str], run_dir: Path, stage: Stage, values: dict[str, Any]) -> Any:
    """The recipe of one run: `base` with the command line's `overrides`, then `values`, then the run
    directory (and the stage's outputs inside it). A UserError names the value that does not fit."""
    from llmforge.recipe import load_recipe

    placed = [f"run.out_dir={toml_literal(str(run_dir.parent))}", f"run.name={toml_literal(run_dir.name)}"]
    recipe = load_recipe(base, [*overrides, *set_items(values), *placed, *stage.overrides(run_dir)])
    recipe.table(stage.table)
    return recipe


def write_run_recipe(recipe: Any, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_RECIPE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(recipe.to_toml())
    os.replace(tmp, path)
    return path


def finished(run_dir: Path) -> dict[str, Any] | None:
    """The results of a run that already finished (a resumed sweep or ablation does not run it again)."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def run_stage(
    stage: Stage,
    run_dir: Path,
    tokens: Path | None,
    on_point: Callable[[int, float], bool] | None = None,
) -> RunOutcome:
    """Run the stage on `run_dir/run.toml`; `on_point(step, val_loss)` is called for each new point of the
    curve and stops the run when it returns True. Ctrl-C (or SIGTERM to this process) stops the child the same
    way, waits for its checkpoint, and is raised again."""
    argv = [sys.executable, "-m", "llmforge", *stage.argv(run_dir / RUN_RECIPE, tokens)]
    curve = Curve(stage.metrics_file(run_dir), stage.curve_key)
    started = time.monotonic()
    stdout_path = run_dir / (RESULT + ".part")
    with (run_dir / LOG).open("a") as log, stdout_path.open("w") as out:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        child = subprocess.Popen(argv, stdout=out, stderr=log, env=_child_env(), preexec_fn=_stop_with_parent)
        stopped = False
        try:
            while child.poll() is None:
                time.sleep(POLL_S)
                for step, value in curve.poll():
                    if on_point is not None and not stopped and on_point(step, value):
                        _stop(child)
                        stopped = True
        except BaseException:
            _stop(child)
            _wait(child)
            raise
    # the points written just before it ended
    last = curve.poll_finished(stage.finished_metrics_file(run_dir))
    for step, value in last:
        if on_point is not None and not stopped:
            on_point(step, value)
    seconds = time.monotonic() - started
    rc = child.returncode
    if stopped:
        return RunOutcome("stopped", None, dict(curve.points), rc, seconds, "stopped early")
    if rc != 0:
        return RunOutcome("failed", None, dict(curve.points), rc, seconds, _last_error(run_dir / LOG, rc))
    try:
        results = json.loads(stdout_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return RunOutcome(
            "failed", None, dict(curve.points), rc, seconds, "the stage printed no JSON results"
        )
    write_json(run_dir / RESULT, results)
    stdout_path.unlink(missing_ok=True)
    return RunOutcome("complete", results, dict(curve.points), rc, seconds)


def _stop_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM (save, then stop) when the sweep process dies,
    even by SIGKILL, so no orphaned run goes on writing into a run directory a resumed sweep will use."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)


def _wait(child: subprocess.Popen) -> None:
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _last_error(log: Path, rc: int) -> str:
    """The child's last error line (its one-line message: a user error, or a runtime failure's reason)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines[-40:]):
        if line.lower().startswith(("error", "runtimeerror")) or "error:" in line.lower():
            return f"exit {rc}: {line[:300]}"
    return f"exit {rc}: {lines[-1][:300] if lines else 'no output'} (see {log})"


def check_runnable(base: Path, overrides: list[str], stage: Stage, trial_values: list[dict[str, Any]],
                   probe_dir: Path) -> None:  # fmt: skip
    """Every `trial_values` entry makes a valid recipe for `stage` (unknown keys, values out of range): exit 2
    naming the key before any run starts."""
    for values in trial_values:
        try:
            run_recipe(base, overrides, probe_dir, stage, values)
        except UserError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise UserError(f"{shown}: {e}") from None
