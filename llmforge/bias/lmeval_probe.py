"""What the lm-eval-scored probes (CrowS-Pairs, BBQ, ETHOS) share: staging the probe's data file, one
`llmforge eval run` in a child process, reading the report it writes, and intervals over its per-item samples.

The eval stage owns the task definitions (its offline YAMLs score exactly as lm-eval's own tasks), so a probe
runs the eval's command rather than importing it (DESIGN §1) and reads its `report` artifact: `results.json`
(lm-eval's format, the headline numbers as lm-eval aggregated them) and `samples_<task>.jsonl` (per item: the
document, the log-likelihoods, each metric's per-item value; written with --log-samples).

Items. The eval reads `<data-dir>/<folder>/<file>` and `--limit N` scores the first N rows. The public files are
sorted (ETHOS by label, BBQ by category), so the first N rows would be one label or one category. The probe
writes its file into `<work_dir>/data` in the same format, rows in a seeded stratified order (`spread_order`),
so that any first N rows hold each stratum in proportion to its size; the rest of the file follows unchanged in
content (the few-shot pool of ETHOS is still the whole file). Without a limit the copy is the file as it is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shlex
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge import rows
from llmforge.bias.probe import GroupScore, ProbeContext
from llmforge.bias.stats import wilson
from llmforge.console import UserError, info, state
from llmforge.subcommand import run_llmforge

Runner = Callable[[list[str]], Any]  # llmforge argv -> CompletedProcess-like (returncode, stdout)
BOOTSTRAP_DRAWS = 2000
FEW_ITEMS = 30  # fewer items than this in a group: its interval is wide, the caveat says so
STEERING_CAVEAT = (
    "steering does not apply: this probe scores fixed answers by their log-likelihood (lm-eval), nothing is "
    "generated for a steering logits processor to change"
)


# -------------------------------------------------------------------------------------- reading the file


def need_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: no such data file")
    return path


def read_text(path: Path) -> str:
    return rows.read_text(need_file(path))


def csv_rows(
    path: Path, columns: Sequence[str], delimiter: str = ","
) -> tuple[list[str], list[tuple[str, dict]]]:
    """The header and (`file:line`, row) of every data row; a row short of a column in `columns`, or with more
    cells than the header, is refused naming its line and what was expected."""
    header, found = rows.csv_rows(need_file(path), delimiter)
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(
            f"{path}:1: the header lacks the column '{missing[0]}' (expected {delimiter.join(columns)}; "
            f"found {delimiter.join(header)})"
        )
    for where, row in found:
        if row.get(None):
            raise UserError(
                f"{where}: {len(row[None])} more cells than the header's columns; quote a text cell that "
                f"holds '{delimiter}'"
            )
        for c in columns:
            if row.get(c) is None:
                raise UserError(f"{where}: the row has no cell for the column '{c}'")
    if not found:
        raise UserError(f"{path}: no rows after the header")
    return header, found


def jsonl_rows(path: Path) -> list[tuple[str, dict]]:
    found = rows.jsonl_rows(need_file(path))
    if not found:
        raise UserError(f"{path}: no rows")
    return found


def one_of(where: str, row: dict, key: str, allowed: Sequence[str]) -> str:
    value = row.get(key)
    if value not in allowed:
        raise UserError(f"{where}: '{key}' is {value!r}; expected one of: {', '.join(allowed)}")
    return value


def text(where: str, row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: '{key}' is {'missing' if value is None else 'empty'}; expected text")
    return value


def check_options(ctx: ProbeContext, probe: str, known: Sequence[str]) -> None:
    unknown = [k for k in ctx.options if k not in known]
    if unknown:
        raise UserError(f"[bias.{probe}] {unknown[0]}: unknown key; known: {', '.join(known)}")


def option_int(ctx: ProbeContext, probe: str, key: str, default: int) -> int:
    value = ctx.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"[bias.{probe}] {key}: {value!r}; expected a whole number ≥ 0")
    return value


# -------------------------------------------------------------------------------------- staging the file


def spread_order(strata: Sequence[str], seed: int) -> list[int]:
    """A permutation of the rows whose every prefix holds each stratum in proportion to its size (within one
    row): proportional stratified sampling (Cochran 1977, §5.5) read in order, so `--limit N` takes a
    proportional sample of any size N.

    Rows of a stratum are shuffled with `seed`. Read as Tijdeman's (1980) chairman assignment problem: the k-th
    row of a stratum of share p is due by position k/p; position n takes the row due first (earliest deadline
    first, ties: the larger stratum, then the name) among the strata that would not go a row over their share
    n·p, which keeps every count within one row of its share at every prefix."""
    rng = random.Random(seed)
    by: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by[s].append(i)
    names = sorted(by, key=lambda name: (-len(by[name]), name))
    for name in names:
        rng.shuffle(by[name])
    total, taken = len(strata), dict.fromkeys(names, 0)
    order = []
    for n in range(1, total + 1):
        open_ = [name for name in names if taken[name] < len(by[name])]
        allowed = [name for name in open_ if taken[name] + 1 - n * len(by[name]) / total < 1] or open_
        pick = min(
            allowed, key=lambda name: (taken[name] + 1) / len(by[name])
        )  # first of equal: by size, name
        order.append(by[pick][taken[pick]])
        taken[pick] += 1
    return order


def stage_csv(source: Path, target: Path, order: Sequence[int] | None, delimiter: str = ",") -> None:
    """`source` rewritten at `target`, data rows in `order` (None: copied as is)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if order is None:
        shutil.copyfile(source, target)
        return
    read = csv.reader(io.StringIO(read_text(source), newline=""), delimiter=delimiter)
    header, *rows = [row for row in read if row]  # csv.DictReader (the eval's reader) skips empty rows too
    with open(target, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows[i] for i in order)


def stage_jsonl(source: Path, target: Path, order: Sequence[int] | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if order is None:
        shutil.copyfile(source, target)
        return
    lines = [line for line in read_text(source).split("\n") if line.strip()]
    target.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")


def staged_order(ctx: ProbeContext, strata: Sequence[str]) -> list[int] | None:
    """The stratified order when the probe scores only some rows, else None (the file as it is)."""
    if ctx.limit is None or ctx.limit >= len(strata):
        return None
    return spread_order(strata, ctx.seed)


# ------------------------------------------------------------------------------------------ the eval run


@dataclass
class EvalRun:
    """One task's eval: its lm-eval results (`metrics`: "<metric>,<filter>" keys), per-item samples, the report."""

    task: str
    metrics: dict[str, Any]
    samples: list[dict[str, Any]]
    n_items: int
    truncated: dict[str, Any]
    report: Path
    command: str

    def value(self, metric: str, filt: str = "none") -> float:
        return float(self.metrics[f"{metric},{filt}"])


def eval_argv(ctx: ProbeContext, task: str, data_dir: Path, out: Path, num_fewshot: int = 0) -> list[str]:
    """`llmforge eval run` of one offline task on the probe's model, logging per-item samples."""
    argv = [*(["--quiet"] if state.quiet else []), *(["--debug"] if state.debug else [])]
    argv += ["eval", "run", str(ctx.model_path), "--tasks", task, "--data-dir", str(data_dir)]
    argv += ["--num-fewshot", str(num_fewshot)]
    if ctx.limit is not None:
        argv += ["--limit", str(ctx.limit)]
    if ctx.device:
        argv += ["--device", ctx.device]
    return [*argv, "--batch-size", str(ctx.batch_size), "--log-samples", "--out", str(out), "--json"]


def run_eval(
    ctx: ProbeContext, task: str, data_dir: Path, *, num_fewshot: int = 0, runner: Runner | None = None
) -> EvalRun:
    """Run the eval into `<work_dir>/lmeval` and read it back. Exit 2 of the eval (it refused its input) is a
    UserError, any other failure a RuntimeError; both name the command that reproduces it."""
    out = Path(ctx.work_dir) / "lmeval"
    argv = eval_argv(ctx, task, data_dir, out, num_fewshot)
    command = "llmforge " + shlex.join(argv)
    info(f"[bold]bias {task}[/]: {command}")
    done = (runner or run_llmforge)(argv)
    if done.returncode == 2:
        raise UserError(f"the {task} eval refused its input (its error is above); rerun: {command}")
    if done.returncode != 0:
        raise RuntimeError(
            f"the {task} eval failed (exit {done.returncode}; its error is above); rerun: {command}"
        )
    return read_eval(out, task, command)


def read_eval(report: Path, task: str, command: str = "") -> EvalRun:
    """The task's numbers from an eval report (results.json + samples_<task>.jsonl)."""
    f = report / "results.json"
    try:
        results = json.loads(f.read_text(encoding="utf-8"))
        metrics = results["results"][task]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise RuntimeError(f"{f}: the eval wrote no readable results for {task} ({e})") from None
    samples_file = report / f"samples_{task}.jsonl"
    if not samples_file.is_file():
        raise RuntimeError(f"{samples_file}: the eval logged no per-item samples")
    samples = [json.loads(x) for x in samples_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    samples.sort(key=lambda s: s["doc_id"])
    n = results.get("n-samples", {}).get(task, {}).get("effective", len(samples))
    truncated = results.get("llmforge", {}).get("truncated", {}).get(task, {})
    return EvalRun(task, metrics, samples, n, truncated, report, command)


# -------------------------------------------------------------------------------------------- intervals


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def proportion(group: str, metric: str, hits: Sequence[float], ideal: float | None = None) -> GroupScore:
    """A share of 0/1 items with its Wilson 95% interval."""
    n, k = len(hits), int(round(sum(hits)))
    value = k / n if n else math.nan
    low, high = wilson(k, n)
    return GroupScore(group, metric, value, n, low, high, ideal)


def bootstrap(
    n: int, statistic: Callable[[Any], Any], *, seed: int, draws: int = BOOTSTRAP_DRAWS
) -> tuple[float, float]:
    """95% percentile bootstrap interval (Efron & Tibshirani 1993, §13.3) of a statistic of n items:
    `statistic(idx)` gets a (draws, n) matrix of resampled item indices and returns one value per row.
    Draws where the statistic is undefined (NaN) are left out."""
    import numpy as np

    if n == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    values = np.asarray(statistic(idx), dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def group_caveat(groups: Sequence[GroupScore], what: str) -> list[str]:
    small = sorted({g.group for g in groups if g.n < FEW_ITEMS})
    if not small:
        return []
    return [f"fewer than {FEW_ITEMS} {what} in {', '.join(small)}: those intervals are wide"]


def one_answer_caveat(run: EvalRun, choices: Sequence[str]) -> list[str]:
    """A caveat when the model picked the same choice (the likeliest answer, as lm-eval's acc does) for every
    item: its scores then describe that one answer, not how it read the items."""
    picked = {
        max(range(len(s["filtered_resps"])), key=lambda i: s["filtered_resps"][i][0]) for s in run.samples
    }
    if len(picked) != 1 or len(run.samples) < 2:
        return []
    (k,) = picked
    name = choices[k] if k < len(choices) else f"choice {k}"
    return [
        f"the model answered '{name}' for all {len(run.samples)} items: the scores reflect that one answer"
    ]


def truncation_caveat(run: EvalRun) -> list[str]:
    t = run.truncated
    if not t or not (t.get("contexts") or t.get("answers")):
        return []
    return [
        f"{t.get('contexts', 0)} items had their prompt cut to the model's {t.get('max_length')}-token context "
        f"(left truncation) and {t.get('answers', 0)} an answer longer than it"
    ]


def common_details(
    run: EvalRun, staged: Path, order: Sequence[int] | None, num_fewshot: int
) -> dict[str, Any]:
    return {
        "eval_command": run.command,
        "eval_report": str(run.report),
        "data": str(staged),
        "item_order": "file order"
        if order is None
        else "seeded proportional stratified order (spread_order)",
        "num_fewshot": num_fewshot,
        "truncated": run.truncated,
    }
