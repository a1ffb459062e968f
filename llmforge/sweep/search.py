"""`llmforge sweep`: check everything, open (or continue) the study, run trials until the budget is spent,
then write the sweep's report artifact, the best recipe and (with --scale-to) its extrapolation.

Layout under `--out` (default `<run dir>/sweeps/<study>`):
  study.db                 the Optuna study (default storage; --storage names another database)
  trials/trial-NNNN/       one run directory per trial: run.toml, log.txt, result.json and the stage's outputs
  best.toml                the base recipe with the best trial's values (a fresh run directory)
  scaled.toml              --scale-to: the best settings extrapolated to N parameters (labelled as such)
  report/                  a `report` artifact: results.json, report.md, history.png, importance.png,
                           curves.png; its inputs are every finished trial's stage report (lineage)
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, require, write_json, write_manifest
from llmforge.console import UserError, info, progress, rate_text
from llmforge.sweep.runner import check_runnable
from llmforge.sweep.space import SweepSpec
from llmforge.sweep.stages import Stage

REPORT = "report"


@dataclass
class SweepJob:
    recipe: Path
    overrides: list[str]
    spec: SweepSpec
    stage: Stage
    out: Path
    storage: str
    study: str
    tokens: Path | None
    scale_to: float | None = None


def default_out(recipe: Any, study: str) -> Path:
    return recipe.run_dir / "sweeps" / study


def resolve_tokens(recipe: Any, stage: Stage, given: Path | None) -> Path | None:
    """The tokens artifact every pretrain trial reads: --tokens, train.tokens, else <run dir>/tokens."""
    if stage.name != "pretrain":
        return None
    train = recipe.table("train")
    path = given or (Path(train.tokens) if train.tokens else recipe.run_dir / "tokens")
    require(path, "tokens")
    return path.resolve()


def check_job(job: SweepJob, base: Any) -> None:
    """Everything that would fail a trial for a reason known now: exit 2 before the first one starts."""
    probes = []
    firsts = {p.key: p.corners()[0] for p in job.spec.params}
    for p in job.spec.params:
        probes += [{**firsts, p.key: v} for v in p.corners()]
    check_runnable(job.recipe, job.overrides, job.stage, probes, job.out / "trials" / "check")
    if job.spec.metric.is_eval:
        _check_eval_metric(job, base)
    if job.scale_to is not None and job.stage.name != "pretrain":
        raise UserError("--scale-to: extrapolates pretraining settings; use it with --stage pretrain")
    ensure_writable(job.out)


def _check_eval_metric(job: SweepJob, base: Any) -> None:
    from llmforge.eval.tasks import OFFLINE_TASKS

    task = job.spec.metric.task
    data_dir = base.eval.data_dir if base.eval is not None else None
    if data_dir is not None and task not in OFFLINE_TASKS:
        raise UserError(f"{job.spec.source}: metric {job.spec.metric.name!r}: {task!r} is not an offline task "
                        f"(eval.data_dir is set); known: {', '.join(sorted(OFFLINE_TASKS))}")  # fmt: skip


def run_sweep(job: SweepJob) -> dict[str, Any]:
    from llmforge.sweep.study import (
        Objective,
        TrialFailed,
        finished_count,
        open_storage,
        open_study,
        reclaim_orphans,
    )

    warnings.filterwarnings("ignore", message=".*already reported.*")
    job.out.mkdir(parents=True, exist_ok=True)
    study = open_study(open_storage(job.storage), job.study, job.spec)
    retried = reclaim_orphans(study)
    if retried:
        info(f"continuing trial(s) {', '.join(map(str, retried))} (cut off earlier) from their checkpoints")
    done_before = finished_count(study)
    remaining = job.spec.trials - done_before
    interrupted = False
    if remaining > 0:
        info(f"[bold]sweep {job.study}[/]: {done_before} of {job.spec.trials} trials done; "
             f"{job.spec.sampler} sampler, {job.spec.pruner} pruner, {job.spec.metric.name} ({job.spec.direction})")  # fmt: skip
        with progress() as bar:
            task = bar.add_task(f"sweep {job.study}", total=job.spec.trials, completed=done_before, rate="")
            started = time.monotonic()

            def on_trial(number: int, state: str, value: float | None) -> None:
                shown = "" if value is None else f" {job.spec.metric.name} {value:.4g}"
                info(f"trial {number}: {state}{shown}")
                count = finished_count(study)
                bar.update(
                    task,
                    completed=count,
                    rate=rate_text(count - done_before, time.monotonic() - started, "trials"),
                )

            def stop_when_spent(study_, _trial) -> None:  # several workers share one budget
                if finished_count(study_) >= job.spec.trials:
                    study_.stop()

            objective = Objective(job.spec, job.stage, job.recipe, job.overrides, job.out, job.tokens, job.study,
                                  on_trial)  # fmt: skip
            timeout = job.spec.timeout_minutes * 60 if job.spec.timeout_minutes else None
            try:
                study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(TrialFailed,),
                               callbacks=[stop_when_spent])  # fmt: skip
            except KeyboardInterrupt:
                interrupted = True
    summary = write_report(job, study)
    summary["interrupted"] = interrupted
    return summary


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        curve = t.user_attrs.get("curve") or {}
        history = t.system_attrs.get("retry_history") or []
        rows.append({
            "number": t.number,
            "state": {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower()),
            "value": t.value,
            "params": dict(t.params),
            "steps": max((int(s) for s in curve), default=None),
            "seconds": t.user_attrs.get("seconds"),
            "run_dir": t.user_attrs.get("run_dir"),
            "continues": history[-1] if history else None,
            "failure": t.user_attrs.get("failure"),
            "curve": curve,
        })  # fmt: skip
    return rows


def _storage_shown(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - shown only
        return url


def write_report(job: SweepJob, study: Any) -> dict[str, Any]:
    from llmforge.sweep import plots
    from llmforge.sweep.report_md import sweep_markdown

    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    best = None
    if complete:
        pick = min if job.spec.direction == "minimize" else max
        best_row = pick(complete, key=lambda r: r["value"])
        best = {k: best_row[k] for k in ("number", "value", "params", "run_dir")}
        best["recipe"] = str(_write_best(job, Path(best_row["run_dir"])))
    importance = _importance(study, len(complete))
    scaled = _scale(job, best) if best and job.scale_to else None
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed", "running")}
    results = {
        "study": job.study,
        "storage": _storage_shown(job.storage),
        "stage": job.stage.name,
        "recipe": str(job.recipe.resolve()),
        "overrides": job.overrides,
        **job.spec.to_dict(),
        "counts": counts,
        "best": best,
        "importance": importance,
        "scaled": scaled,
        "trials": rows,
    }
    inputs = [
        job.stage.report_dir(Path(r["run_dir"])) for r in rows if r["state"] == "complete" and r["run_dir"]
    ]
    with atomic_dir(job.out / REPORT) as tmp:
        write_json(tmp / "results.json", results)
        plots.plot_history(rows, job.spec.metric.name, job.spec.direction, tmp / "history.png")
        plots.plot_curves(rows, tmp / "curves.png")
        if importance:
            plots.plot_importance(importance, tmp / "importance.png")
        (tmp / "report.md").write_text(sweep_markdown(results))
        write_manifest(tmp, "report", inputs=[p for p in inputs if p.is_dir()],
                       stats={"command": "sweep", "study": job.study, "trials": len(rows), "best": best})  # fmt: skip
    return {"report": str(job.out / REPORT), **{k: results[k] for k in ("study", "counts", "best", "scaled")}}


def _write_best(job: SweepJob, run_dir: Path) -> Path:
    """The best trial's recipe, pointed at a fresh run directory beside the base recipe's runs."""
    from llmforge.recipe import load_recipe
    from llmforge.sweep.runner import RUN_RECIPE, toml_literal

    base = load_recipe(job.recipe, job.overrides)
    fresh = [
        f"run.out_dir={toml_literal(str(base.run.out_dir))}",
        f"run.name={toml_literal(job.study + '-best')}",
    ]
    if job.stage.name == "pretrain":
        fresh += ["train.tracker_tags=[]", f"train.tokens={toml_literal(str(job.tokens))}"]
    else:
        fresh += [f"finetune.out={toml_literal(str(base.run.out_dir / (job.study + '-best') / 'finetune'))}"]
    recipe = load_recipe(run_dir / RUN_RECIPE, fresh)
    path = job.out / "best.toml"
    tmp = path.with_name(".best.toml.tmp")
    tmp.write_text(
        f"# best trial of sweep {job.study!r} ({run_dir.name}); base recipe {job.recipe}\n" + recipe.to_toml()
    )
    os.replace(tmp, path)
    return path


def _importance(study: Any, n_complete: int) -> dict[str, float] | None:
    """fANOVA importances (Hutter et al. 2014) of the complete trials; None with fewer than 3 or no variation."""
    if n_complete < 3:
        return None
    import optuna

    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None


def _scale(job: SweepJob, best: dict[str, Any]) -> dict[str, Any]:
    import json

    from llmforge.sweep.runner import RESULT
    from llmforge.sweep.transfer import scale_recipe

    results = json.loads((Path(best["run_dir"]) / RESULT).read_text())
    text, derived = scale_recipe(Path(best["recipe"]), results, job.scale_to, f"{job.study}-scaled")
    path = job.out / "scaled.toml"
    tmp = path.with_name(".scaled.toml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return {"recipe": str(path), "extrapolation": True, **derived}
