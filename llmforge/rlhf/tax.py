"""The alignment tax (Ouyang et al. 2022, §4.2): how downstream task scores change from the model before
alignment to the model after it, per task and metric, with a 95% confidence interval of the change.

Both checkpoints go through the eval stage's own command, `llmforge eval run CKPT --tasks … --json`, in a
subprocess with the same arguments (stages share artifacts, never imports: DESIGN §2); each run writes its
`report` artifact under <out>/before and <out>/after, and this module reads their `results.json`
(lm-eval's format: `"<metric>,<filter>"` with the standard error under `"<metric>_stderr,<filter>"`).

The interval of delta = after − before comes from, in order of preference:
- `paired-bootstrap`: per-item scores of both runs (lm-eval's `samples_<task>*.jsonl`, written beside
  `results.json` when the eval logs samples), matched by `doc_id`, items resampled with replacement, the same
  draw for both models; the 2.5th/97.5th percentiles of the resampled mean difference. Pairing removes the
  per-item difficulty both models share, so it is tighter and honest. Used only for a metric whose reported
  value is the mean of its per-item scores (accuracy, MC2), not for corpus-level ones (perplexity, BLEU).
- `stderr`: delta ± 1.96·sqrt(se_before² + se_after²). This treats the two scores as independent, which they
  are not (the same items): with a positive correlation between the models' per-item scores, the true
  interval is narrower, so this one is conservative.
- `none`: the eval gave no stderr for the metric (e.g. lm-eval's word perplexity): no interval, no verdict.

Signs: `delta` is always after − before; `tax` is the loss, positive when the after model is worse whatever the
metric's direction (= −delta when higher is better, +delta for perplexity-like metrics).

Layout of <out> (a `report` artifact):
  report.json   every row: before, after, delta, CI, method, significant, higher_is_better, tax, verdict
  tax.md        the same as a table
  tax.png       delta per task/metric with its CI as whiskers (one panel per direction: ↑ better, ↓ better)
  before/ after/   the two eval `report` artifacts (results.json, report.md, manifest.json)
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmforge.artifacts import MANIFEST, atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.artifacts.model_dir import require_causal_lm_dir
from llmforge.console import UserError, info, state, warn

REPORT_JSON = "report.json"
TAX_MD = "tax.md"
TAX_PNG = "tax.png"
SIDES = ("before", "after")
Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal
BOOTSTRAP_DRAWS = 2000
# Metric names whose smaller values are better, for a report without lm-eval's `higher_is_better` (llmforge's
# perplexity reports) or a metric it does not list.
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "nll", "loss")
# Flags measure_tax sets itself; the same flags in extra_args would make the two runs ambiguous.
OWN_FLAGS = ("--tasks", "-t", "--out", "-o", "--limit", "--json", "--force")

Runner = Callable[[list[str]], Any]  # llmforge argv -> CompletedProcess-like (returncode, stdout)


# ----------------------------------------------------------------------------------------------- checks


def check_inputs(
    before: Path,
    after: Path,
    tasks: Sequence[str],
    out: Path,
    extra_args: Sequence[str],
    lister: Runner | None = None,
) -> None:
    """Everything that can be refused before an eval starts (UserError → exit 2); `lister` runs
    `llmforge eval tasks --json` for the task-name check (None: no check)."""
    for key, path in zip(SIDES, (before, after), strict=True):
        require_causal_lm_dir(path, key, needs="rlhf tax (the eval suite scores causal LMs)")
    if not [t for t in tasks if t.strip()]:
        raise UserError(
            "--tasks: no tasks given; name the eval tasks to compare, e.g. --tasks piqa,truthfulqa_mc1"
        )
    bad = [a for a in extra_args if a.split("=", 1)[0] in OWN_FLAGS]
    if bad:
        raise UserError(f"--eval-arg: {bad[0]} is set by rlhf tax itself (tasks, limit and the report paths)")
    out = Path(out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not (out / REPORT_JSON).is_file():
        raise UserError(
            f"--out {out}: exists and is not an alignment-tax report (no {REPORT_JSON}); give a new directory"
        )
    try:
        ensure_writable(out)
    except UserError as e:
        raise UserError(f"--out {e}") from None
    if lister is not None:
        check_task_names(tasks, extra_args, lister)
    if Path(before).resolve() == Path(after).resolve():
        warn(f"before and after are the same model ({before}): every delta measures evaluation noise only")


def check_task_names(tasks: Sequence[str], extra_args: Sequence[str], lister: Runner) -> None:
    """Offline (--data-dir among the eval arguments), a task name the eval would refuse is refused now, in one
    line, instead of by the first eval run: the names are the eval's own (`llmforge eval tasks --json`: its
    offline tasks and presets). Online names are the harness's registry, which only the eval run reads."""
    if not any(a == "--data-dir" or a.startswith("--data-dir=") for a in extra_args):
        return
    listed = lister(["eval", "tasks", "--json"])
    try:
        listing = json.loads(listed.stdout) if listed.returncode == 0 else {}
        known = {*listing.get("tasks", {}), *listing.get("presets", {})}
    except (json.JSONDecodeError, TypeError, AttributeError):
        return  # no list to check against: the eval run still checks the names
    unknown = [t for t in tasks if known and t not in known]
    if unknown:
        raise UserError(
            f"--tasks: unknown task '{unknown[0]}' (offline, with --data-dir); known: "
            + ", ".join(sorted(known))
        )


# ------------------------------------------------------------------------------------------- eval runs


def eval_argv(
    model: str, tasks: Sequence[str], out: str, extra_args: Sequence[str], limit: int | None
) -> list[str]:
    """The `llmforge` arguments of one eval run; identical for both checkpoints but for the model and --out."""
    argv = []
    if state.quiet:
        argv.append("--quiet")
    if state.debug:
        argv.append("--debug")
    argv += ["eval", "run", model, "--tasks", ",".join(tasks)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if "--log-samples" not in extra_args:
        argv.append("--log-samples")  # per-item scores: the paired bootstrap interval needs them
    return [*argv, *extra_args, "--out", out, "--json"]


def subprocess_runner(argv: list[str]) -> subprocess.CompletedProcess:
    """`python -m llmforge ARGV`: stdout (the --json document) captured, stderr left on ours so the user sees
    the eval's progress and errors."""
    return subprocess.run(
        [sys.executable, "-m", "llmforge", *argv], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def run_eval(side: str, argv: list[str], shown_out: Path, runner: Runner) -> None:
    """Run one eval; exit 2 when the eval refused its input (exit 2: the same input fails for both models),
    1 for any other failure, naming the command that reproduces it."""
    info(f"[bold]alignment tax[/]: evaluating the {side} model: llmforge {shlex.join(argv)}")
    done = runner(argv)
    if done.returncode == 0:
        return
    again = list(argv)
    again[again.index("--out") + 1] = str(shown_out)
    command = f"llmforge {shlex.join(again)}"
    if done.returncode == 2:
        raise UserError(
            f"the eval of the {side} model refused its input (its error is above); rerun: {command}"
        )
    raise RuntimeError(
        f"the eval of the {side} model failed (exit {done.returncode}; its error is above); rerun: {command}"
    )


def read_results(report_dir: Path) -> dict[str, Any]:
    f = Path(report_dir) / "results.json"
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RuntimeError(f"{f}: the eval wrote no readable results ({e})") from None


# ---------------------------------------------------------------------------------------------- metrics


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def metric_values(results: dict[str, Any]) -> dict[tuple[str, str, str], tuple[float, float | None]]:
    """(task, metric, filter) -> (value, stderr or None) for every numeric metric of an lm-eval results dict."""
    out = {}
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if "," not in key or "_stderr," in key or _number(value) is None:
                continue
            name, filt = key.split(",", 1)
            out[(task, name, filt)] = (float(value), _number(values.get(f"{name}_stderr,{filt}")))
    return out


def higher_is_better(results: dict[str, Any], task: str, metric: str) -> bool:
    """lm-eval's own direction for the metric when the results give it, else from the metric's name."""
    given = results.get("higher_is_better", {}).get(task, {}).get(metric)
    if isinstance(given, bool):
        return given
    return not any(word in metric for word in LOWER_IS_BETTER)


def stderr_ci(delta: float, se_before: float | None, se_after: float | None) -> tuple[float, float] | None:
    """delta ± 1.96·sqrt(se_b² + se_a²) (independence assumed; see the module docstring), or None."""
    if se_before is None or se_after is None:
        return None
    half = Z95 * math.sqrt(se_before**2 + se_after**2)
    return delta - half, delta + half


def paired_bootstrap_ci(
    before: Sequence[float], after: Sequence[float], *, seed: int = 0, draws: int = BOOTSTRAP_DRAWS
) -> tuple[float, float]:
    """95% percentile interval of mean(after − before) over items resampled with replacement, the same items
    for both models (the scores are paired by item)."""
    import numpy as np

    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if diff.size == 0:
        raise ValueError("paired bootstrap of no items")
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            diff[rng.integers(0, diff.size, size=(min(500, draws - i), diff.size))].mean(axis=1)
            for i in range(0, draws, 500)
        ]
    )
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def read_samples(report_dir: Path, task: str) -> dict[tuple[str, str], dict[Any, float]]:
    """(metric, filter) -> doc_id -> per-item score from lm-eval's samples_<task>*.jsonl in an eval report;
    only scalar per-item values (a corpus-level metric's items are tuples). Empty when the eval logged none."""
    found: dict[tuple[str, str], dict[Any, float]] = {}
    for f in sorted(Path(report_dir).glob(f"samples_{task}*.jsonl")):
        if f.name != f"samples_{task}.jsonl" and not f.name.startswith(f"samples_{task}_"):
            continue  # samples_piqa_x.jsonl is piqa's; samples_piqa2.jsonl is another task's
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            for metric in item.get("metrics", []):
                value = _number(item.get(metric))
                if value is not None:
                    found.setdefault((metric, item.get("filter", "none")), {})[json.dumps(item["doc_id"])] = (
                        value
                    )
    return found


def _paired_items(
    b: dict[Any, float] | None, a: dict[Any, float] | None, value_b: float, value_a: float
) -> tuple[list[float], list[float]] | None:
    """Both runs' per-item scores on the same items, when they exist and are what the reported value averages."""
    if not b or not a or set(b) != set(a):
        return None
    ids = sorted(b)
    xs, ys = [b[i] for i in ids], [a[i] for i in ids]
    for items, value in ((xs, value_b), (ys, value_a)):
        if abs(sum(items) / len(items) - value) > 1e-6 * max(1.0, abs(value)):
            return None  # not a mean over items (e.g. an aggregate of another form): the stderr is the rule
    return xs, ys


def tax_row(
    key: tuple[str, str, str],
    before: tuple[float, float | None],
    after: tuple[float, float | None],
    higher: bool,
    items: tuple[list[float], list[float]] | None = None,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """One task/metric: before, after, delta = after − before, its 95% CI (paired bootstrap over `items` when
    given, else from the two stderrs), whether the CI excludes 0, and the tax (positive = after is worse)."""
    (value_b, se_b), (value_a, se_a) = before, after
    delta = value_a - value_b
    if items is not None:
        ci, method = paired_bootstrap_ci(*items, seed=seed), "paired-bootstrap"
    else:
        ci = stderr_ci(delta, se_b, se_a)
        method = "stderr" if ci is not None else "none"
    significant = None if ci is None else (ci[0] > 0 or ci[1] < 0)
    tax = -delta if higher else delta
    if significant is None:
        verdict = "no interval"
    elif not significant:
        verdict = "no significant change"
    else:
        verdict = "worse" if tax > 0 else "better"
    task, metric, filt = key
    return {
        "task": task,
        "metric": metric,
        "filter": filt,
        "higher_is_better": higher,
        "before": value_b,
        "after": value_a,
        "before_stderr": se_b,
        "after_stderr": se_a,
        "delta": delta,
        "ci_low": None if ci is None else ci[0],
        "ci_high": None if ci is None else ci[1],
        "ci_method": method,
        "items": None if items is None else len(items[0]),
        "significant": significant,
        "tax": tax,
        "verdict": verdict,
    }


def compare_results(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    before_dir: Path | None = None,
    after_dir: Path | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A tax row for every metric both results hold (per-item samples read from the report dirs when given)."""
    values_b, values_a = metric_values(before), metric_values(after)
    samples: dict[tuple[str, str], dict] = {}
    rows = []
    for key in [k for k in values_b if k in values_a]:
        task, metric, filt = key
        items = None
        if before_dir is not None and after_dir is not None:
            for side, d in (("before", before_dir), ("after", after_dir)):
                if (side, task) not in samples:
                    samples[(side, task)] = read_samples(d, task)
            items = _paired_items(
                samples[("before", task)].get((metric, filt)),
                samples[("after", task)].get((metric, filt)),
                values_b[key][0],
                values_a[key][0],
            )
        higher = higher_is_better(before, task, metric)
        rows.append(tax_row(key, values_b[key], values_a[key], higher, items, seed=seed))
    missing = sorted({k[0] for k in values_b} ^ {k[0] for k in values_a})
    if missing:
        warn(f"only one of the two evals reported {', '.join(missing)}: left out of the tax")
    return rows


# ---------------------------------------------------------------------------------------------- writing


def _label(row: dict[str, Any]) -> str:
    filt = "" if row["filter"] == "none" else f" ({row['filter']})"
    return f"{row['task']} {row['metric']}{filt}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _ci_text(row: dict[str, Any]) -> str:
    if row["ci_low"] is None:
        return "-"
    return f"[{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Alignment tax",
        "",
        f"- before: {report['before']}",
        f"- after: {report['after']}",
        f"- tasks: {', '.join(report['tasks'])}",
        f"- eval command (each model): `{report['eval_command']}`",
        "- delta = after − before; tax > 0 means the after model is worse (for ↓ metrics a higher value is worse);",
        "  significant: the 95% CI of the delta excludes 0 (stderr: ±1.96·sqrt(se_b² + se_a²), treating the runs",
        "  as independent although they score the same items; paired-bootstrap: per-item scores resampled).",
        "",
        "| task | metric | filter | better | before | after | delta | 95% CI | method | significant | verdict |",
        "| --- | --- | --- | :---: | ---: | ---: | ---: | :---: | --- | :---: | --- |",
    ]
    for r in report["rows"]:
        sig = "-" if r["significant"] is None else ("yes" if r["significant"] else "no")
        lines.append(
            f"| {r['task']} | {r['metric']} | {r['filter']} | {'↑' if r['higher_is_better'] else '↓'} | "
            f"{_num(r['before'])} | {_num(r['after'])} | {r['delta']:+.4g} | {_ci_text(r)} | {r['ci_method']} | "
            f"{sig} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], out: Path) -> Path:
    """Horizontal bars of delta per task/metric with the CI as whiskers; red = significantly worse, green =
    significantly better, grey otherwise. Higher- and lower-is-better metrics get their own panel (their
    scales differ: accuracy vs perplexity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(h, [r for r in rows if r["higher_is_better"] == h]) for h in (True, False)]
    panels = [(h, rs) for h, rs in panels if rs] or [(True, [])]
    heights = [max(1.6, 0.45 * len(rs) + 1.0) for _, rs in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7.5, sum(heights)), squeeze=False, height_ratios=heights
    )
    colours = {"worse": "tab:red", "better": "tab:green"}
    for ax, (higher, rs) in zip(axes[:, 0], panels, strict=True):
        ys = list(range(len(rs)))
        deltas = [r["delta"] for r in rs]
        # max(0, …): a bootstrap bound may sit a rounding error on the other side of the delta
        err = [
            [max(0.0, r["delta"] - r["ci_low"]) if r["ci_low"] is not None else 0.0 for r in rs],
            [max(0.0, r["ci_high"] - r["delta"]) if r["ci_high"] is not None else 0.0 for r in rs],
        ]
        ax.barh(ys, deltas, xerr=err, capsize=4, color=[colours.get(r["verdict"], "tab:grey") for r in rs])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [_label(r) for r in rs], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"after − before, 95% CI ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_rows(report: dict[str, Any]) -> dict[str, str]:
    """One line per task/metric for the summary table: before → after, delta [CI] (method), verdict."""
    rows = {}
    for r in report["rows"]:
        arrow = "↑" if r["higher_is_better"] else "↓"
        rows[f"{_label(r)} {arrow}"] = (
            f"{_num(r['before'])} → {_num(r['after'])}  Δ {r['delta']:+.4g} {_ci_text(r)} "
            f"({r['ci_method']}): {r['verdict']}"
        )
    counts = report["summary"]
    rows["significantly worse / better / unchanged"] = (
        f"{counts['worse']} / {counts['better']} / {counts['unchanged']}"
        + (f" ({counts['no_interval']} without an interval)" if counts["no_interval"] else "")
    )
    rows["report"] = str(report["report"])
    return rows


def _record_final_paths(tmp: Path, out: Path, manifest: dict[str, Any]) -> None:
    """The eval reports are inputs written inside this artifact's temporary directory: name them by the paths
    they have once it is renamed into place (their content hashes are their own manifests' and do not move)."""
    staged = {str((tmp / side).resolve()): str((out / side).resolve()) for side in SIDES}
    for ref in manifest["inputs"]:
        ref["path"] = staged.get(ref["path"], ref["path"])
    write_json(tmp / MANIFEST, manifest)


# ----------------------------------------------------------------------------------------------- the run


def measure_tax(
    before: Path,
    after: Path,
    tasks: list[str],
    out: Path,
    *,
    extra_args: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run `llmforge eval run` on both checkpoints with the same arguments (`extra_args` go to both, e.g.
    `--data-dir ../shared/data --device cpu`), and write the alignment-tax report artifact at `out`.

    `runner(argv)` runs one `llmforge ARGV` command (default: a subprocess of this Python); `seed` seeds the
    paired bootstrap. Returns the report (what report.json holds, plus its path)."""
    before, after, out = Path(before), Path(after), Path(out)
    tasks = [t.strip() for t in tasks if t.strip()]
    extra_args = list(extra_args)
    # a runner given stands in for the eval CLI (tests): the task names are then left to it
    check_inputs(before, after, tasks, out, extra_args, lister=None if runner else subprocess_runner)
    runner = runner or subprocess_runner
    with atomic_dir(out) as tmp:
        for side, model in zip(SIDES, (before, after), strict=True):
            argv = eval_argv(str(model.resolve()), tasks, str((tmp / side).resolve()), extra_args, limit)
            run_eval(side, argv, (out / side).resolve(), runner)
        results = {side: read_results(tmp / side) for side in SIDES}
        rows = compare_results(
            results["before"], results["after"], before_dir=tmp / "before", after_dir=tmp / "after", seed=seed
        )
        if not rows:
            raise RuntimeError(f"the evals of {before} and {after} reported no metric in common")
        report = {
            "before": str(before.resolve()),
            "after": str(after.resolve()),
            "tasks": tasks,
            "limit": limit,
            "seed": seed,
            "confidence": 0.95,
            "eval_command": "llmforge " + shlex.join(eval_argv("CKPT", tasks, "OUT", extra_args, limit)),
            "evals": {side: side for side in SIDES},
            "n_samples": {side: results[side].get("n-samples", {}) for side in SIDES},
            "truncated": {side: results[side].get("llmforge", {}).get("truncated", {}) for side in SIDES},
            "rows": rows,
            "summary": {
                "rows": len(rows),
                "worse": sum(r["verdict"] == "worse" for r in rows),
                "better": sum(r["verdict"] == "better" for r in rows),
                "unchanged": sum(r["verdict"] == "no significant change" for r in rows),
                "no_interval": sum(r["verdict"] == "no interval" for r in rows),
            },
        }
        write_json(tmp / REPORT_JSON, report)
        (tmp / TAX_MD).write_text(markdown(report), encoding="utf-8")
        plot(rows, tmp / TAX_PNG)
        manifest = write_manifest(
            tmp,
            "report",
            recipe={"rlhf_tax": {"tasks": tasks, "limit": limit, "seed": seed, "eval_args": extra_args}},
            inputs=[before, after, tmp / "before", tmp / "after"],
            stats={k: v for k, v in report["summary"].items()},
        )
        _record_final_paths(tmp, out, manifest)
    info(f"[green]wrote[/] {out}")
    return {**report, "report": str(out)}
