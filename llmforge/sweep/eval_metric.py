"""An eval task's metric as a sweep objective: `llmforge eval run` on the trial's final checkpoint, with the
trial's recipe giving the eval defaults ([eval]: data_dir, limit, few-shot), as a child process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.subcommand import run_llmforge
from llmforge.sweep.space import Metric

EVAL_DIR = "sweep-eval"


def eval_metric(metric: Metric, run_dir: Path, results: dict[str, Any]) -> float:
    from llmforge.sweep.study import TrialFailed

    checkpoint = results.get("checkpoint")
    if not checkpoint:
        raise TrialFailed("the stage's results name no final checkpoint to evaluate")
    out = run_dir / "reports" / EVAL_DIR / metric.task
    saved = out / "results.json"
    if not saved.is_file():
        argv = ["eval", "run", str(checkpoint), "--recipe", str(run_dir / "run.toml"), "--tasks", metric.task,
                "--out", str(out), "--force", "--json"]  # fmt: skip
        done = run_llmforge(argv)
        if done.returncode != 0:
            raise TrialFailed(f"llmforge eval run exited {done.returncode} on {checkpoint}")
    scores = json.loads(saved.read_text())["results"].get(metric.task, {})
    value = scores.get(f"{metric.measure},none", scores.get(metric.measure))
    if not isinstance(value, (int, float)):
        known = sorted(k.split(",")[0] for k in scores if not k.endswith("_stderr,none") and "," in k)
        raise TrialFailed(
            f"{metric.task} has no metric {metric.measure!r} (it has {', '.join(known) or 'none'})"
        )
    return float(value)
