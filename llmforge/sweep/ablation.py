"""`llmforge ablate`: every variant (the product of the `--vary` values) trained with several seeds, each a
real stage run; mean ± std per variant and Welch's t-test of each against the first (sweep/significance.py).

Layout under `--out` (default `<run dir>/ablations/<name>`):
  runs/<variant>/seed-<k>/   run directories (run.toml, log.txt, result.json, the stage's outputs)
  report/                    a `report` artifact: results.json, report.md, ablation.png; inputs = every run
Running it again skips finished runs and resumes an interrupted one from its checkpoint.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.console import UserError, info, progress
from llmforge.sweep.runner import (
    RunOutcome,
    check_runnable,
    finished,
    run_recipe,
    run_stage,
    write_run_recipe,
)
from llmforge.sweep.significance import DEFAULT_ALPHA, compare, describe
from llmforge.sweep.space import Metric
from llmforge.sweep.stages import Stage, final_value

REPORT = "report"


@dataclass
class AblationJob:
    recipe: Path
    overrides: list[str]
    vary: list[tuple[str, list[Any]]]
    seeds: int
    base_seed: int
    metric: Metric
    direction: str
    alpha: float
    stage: Stage
    out: Path
    tokens: Path | None
    name: str


def parse_vary(items: list[str]) -> list[tuple[str, list[Any]]]:
    """`KEY=V1,V2,...` per --vary (values as TOML literals, as --set reads them)."""
    from llmforge.recipe import parse_value

    if not items:
        raise UserError("ablate: give at least one --vary KEY=V1,V2 (e.g. --vary model.arch=llama,gpt-neox)")
    out: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        parts = [v.strip() for v in values.split(",")] if sep else []
        if not key or not parts or any(not p for p in parts) or any(not k for k in key.split(".")):
            raise UserError(
                f"--vary {item!r}: expected KEY=V1,V2 with a dotted recipe key, e.g. train.lr=1e-3,3e-3"
            )
        if key in (k for k, _ in out):
            raise UserError(f"--vary {key}: given twice; list all its values in one --vary")
        parsed = [parse_value(p) for p in parts]
        if len(set(map(repr, parsed))) != len(parsed):
            raise UserError(f"--vary {item!r}: a value repeats")
        out.append((key, parsed))
    if all(len(values) == 1 for _, values in out):
        raise UserError("ablate: every --vary has one value: nothing to compare (give two or more values)")
    return out


def variants(vary: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    keys = [k for k, _ in vary]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in vary))]


def variant_name(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name.replace(",", "__"))[:120]


def run_dir_of(job: AblationJob, values: dict[str, Any], k: int) -> Path:
    return job.out / "runs" / _slug(variant_name(values)) / f"seed-{k}"


def _seeded(job: AblationJob, values: dict[str, Any], k: int) -> dict[str, Any]:
    extra: dict[str, Any] = {"run.seed": job.base_seed + k}
    if job.stage.name == "pretrain":
        extra |= {"train.tracker_tags": [f"ablate-{job.name}", _slug(variant_name(values)), f"seed-{k}"],
                  "train.tracker_group": f"ablate-{job.name}"}  # fmt: skip
    return {**values, **extra}


def check_job(job: AblationJob) -> None:
    probes = [_seeded(job, v, 0) for v in variants(job.vary)]
    check_runnable(job.recipe, job.overrides, job.stage, probes, job.out / "runs" / "check")
    if job.seeds < 2:
        raise UserError(
            f"--seeds {job.seeds}: a spread (and Welch's test) needs at least 2 seeds per variant"
        )
    ensure_writable(job.out)


def run_ablation(job: AblationJob) -> dict[str, Any]:
    cells = [(v, k) for v in variants(job.vary) for k in range(job.seeds)]
    runs: list[dict[str, Any]] = []
    interrupted = False
    with progress() as bar:
        task = bar.add_task(f"ablate {job.name}", total=len(cells), rate="")
        for values, k in cells:
            run_dir = run_dir_of(job, values, k)
            try:
                runs.append(_one(job, values, k, run_dir))
            except KeyboardInterrupt:
                interrupted = True
                break
            bar.advance(task)
    summary = write_report(job, runs)
    summary["interrupted"] = interrupted
    return summary


def _one(job: AblationJob, values: dict[str, Any], k: int, run_dir: Path) -> dict[str, Any]:
    name = variant_name(values)
    write_run_recipe(
        run_recipe(job.recipe, job.overrides, run_dir, job.stage, _seeded(job, values, k)), run_dir
    )
    done = finished(run_dir)
    outcome = RunOutcome("complete", done) if done else run_stage(job.stage, run_dir, job.tokens)
    row: dict[str, Any] = {"variant": name, "seed": job.base_seed + k, "run_dir": str(run_dir),
                           "state": outcome.state, "value": None, "seconds": round(outcome.seconds, 2)}  # fmt: skip
    if outcome.state != "complete":
        row["failure"] = outcome.reason
        info(f"[red]{name} seed {k}: failed[/] ({outcome.reason})")
        return row
    try:
        row["value"] = _metric(job, run_dir, outcome.results or {})
    except Exception as e:  # noqa: BLE001 - TrialFailed: the run stays in the report with its reason
        row.update(state="failed", failure=str(e))
        return row
    info(f"{name} seed {k}: {job.metric.name} {row['value']:.4g}")
    return row


def _metric(job: AblationJob, run_dir: Path, results: dict[str, Any]) -> float:
    if job.metric.is_eval:
        from llmforge.sweep.eval_metric import eval_metric

        return eval_metric(job.metric, run_dir, results)
    value = final_value(job.stage, results)
    if value is None:
        raise UserError(f"{run_dir}: the {job.stage.name} results have no {job.stage.final_key}")
    return value


def write_report(job: AblationJob, runs: list[dict[str, Any]]) -> dict[str, Any]:
    from llmforge.sweep.plots import plot_ablation
    from llmforge.sweep.report_md import ablation_markdown

    table = []
    for values in variants(job.vary):
        name = variant_name(values)
        got = [r["value"] for r in runs if r["variant"] == name and r["value"] is not None]
        table.append({"name": name, "values_set": values, **describe(got)})
    comparable = [v for v in table if v["n"]]
    tests = compare(comparable, job.direction, job.alpha) if len(comparable) > 1 else []
    results = {
        "name": job.name,
        "stage": job.stage.name,
        "recipe": str(job.recipe.resolve()),
        "overrides": job.overrides,
        "vary": {k: v for k, v in job.vary},
        "seeds": job.seeds,
        "metric": job.metric.name,
        "direction": job.direction,
        "alpha": job.alpha,
        "variants": table,
        "tests": tests,
        "runs": runs,
    }
    inputs = [job.stage.report_dir(Path(r["run_dir"])) for r in runs if r["state"] == "complete"]
    with atomic_dir(job.out / REPORT) as tmp:
        write_json(tmp / "results.json", results)
        if comparable:
            plot_ablation(comparable, job.metric.name, tmp / "ablation.png")
        (tmp / "report.md").write_text(ablation_markdown(results))
        write_manifest(tmp, "report", inputs=[p for p in inputs if p.is_dir()],
                       stats={"command": "ablate", "name": job.name, "runs": len(runs)})  # fmt: skip
    return {"report": str(job.out / REPORT), "variants": table, "tests": tests}


__all__ = ["AblationJob", "DEFAULT_ALPHA", "check_job", "parse_vary", "run_ablation"]
