"""`report.json` of a dataset build: per step docs/bytes in and out, drop reasons, per-source counts and the
final mixture, gathered from datatrove's per-task stats files; and the funnel plot."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from llmforge.data.pipeline import Stage
from llmforge.data.steps.examples import read_examples, read_removed_ids

_COUNTERS = ("docs_in", "docs_out", "bytes_in", "bytes_out")
_BOOKKEEPING = {"total", "forwarded", "dropped", "doc_len", "doc_len_tokens"}


_STEP_TIMINGS = ("seconds", "docs_per_s", "mb_per_s")


# How a build ran, not what it produced: the same shards come out whatever these are (the task count,
# which does shape the shards, stays in report.json).
_RUN_DETAILS = ("seconds", "resumed", "workers", "workers_requested", "executor")


def split_timings(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report without timings, the timings): report.json holds what the build did, timings.json how
    it ran (time, workers, executor, whether it resumed) — left out of the content hash, so a rebuild of
    the same data hashes the same."""
    steps = report.get("steps", [])
    contents = {k: v for k, v in report.items() if k not in (*_RUN_DETAILS, "steps")}
    contents["steps"] = [{k: v for k, v in s.items() if k not in _STEP_TIMINGS} for s in steps]
    timings = {k: report.get(k) for k in _RUN_DETAILS}
    timings["steps"] = {s["step"]: {k: s.get(k) for k in _STEP_TIMINGS} for s in steps}
    return contents, timings


def _total(value: Any) -> float:
    return value.get("total", 0) if isinstance(value, dict) else value


def _task_stats(stage: Stage) -> list[list[dict]]:
    return [json.loads(p.read_text()) for p in sorted((stage.logs / "stats").glob("*.json"))]


def collect_steps(stages: list[Stage], examples_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """Per metered step (in pipeline order): counters, drop reasons with a few removed examples, per-source
    counts and seconds; and the number of bad records skipped by the readers."""
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    seconds: dict[str, float] = defaultdict(float)
    bad_records = 0
    for stage in stages:
        for task in _task_stats(stage):
            for entry in task:
                stats = entry.get("stats", {})
                bad_records += int(_total(stats.get("bad_records", 0)))
                if entry["name"] in stage.timed:
                    seconds[stage.timed[entry["name"]]] += _total(entry.get("time_stats", 0))
                if entry["name"] not in stage.metered:
                    continue
                for key, value in stats.items():
                    sums[entry["name"]][key] += _total(value)
                seconds[entry["name"]] += _total(entry.get("time_stats", 0))
    order = [label for stage in stages for label in stage.metered]
    steps = [_step_entry(label, sums[label], seconds[label]) for label in order]
    for step in steps:
        step["examples"] = read_examples(examples_dir / step["step"])
        ids = read_removed_ids(examples_dir / step["step"])
        if ids is not None:
            step["dropped_ids"] = ids
    return steps, bad_records


def _step_entry(label: str, stats: dict[str, float], seconds: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": label, **{k: int(stats.get(k, 0)) for k in _COUNTERS}}
    reasons = {k.removeprefix("dropped_"): int(v) for k, v in stats.items() if k.startswith("dropped_")}
    # some steps (line dedup) drop documents without counting them: the in/out difference covers those
    removed = max(int(stats.get("dropped", 0)), entry["docs_in"] - entry["docs_out"])
    unexplained = removed - sum(reasons.values())
    if unexplained > 0:
        reasons[label.split(".", 1)[-1]] = unexplained
    entry["dropped"] = reasons
    by_source: dict[str, dict[str, int]] = defaultdict(dict)
    for key, value in stats.items():
        counter, sep, source = key.partition("/")
        if sep and counter in _COUNTERS:
            by_source[source][counter] = int(value)
    entry["by_source"] = dict(by_source)
    entry["other"] = {
        k: int(v)
        for k, v in stats.items()
        if "/" not in k and k not in _COUNTERS and k not in _BOOKKEEPING and not k.startswith("dropped")
    }
    items = {k.removeprefix("eval_item/"): int(v) for k, v in stats.items() if k.startswith("eval_item/")}
    if items or label.endswith(".decontaminate"):  # documents matched per evaluation item, most first
        entry["matches_per_eval_item"] = dict(sorted(items.items(), key=lambda kv: (-kv[1], kv[0])))
    entry["seconds"] = round(seconds, 3)
    entry["docs_per_s"] = round(entry["docs_in"] / seconds, 1) if seconds > 0 else None
    entry["mb_per_s"] = round(entry["bytes_in"] / 1e6 / seconds, 3) if seconds > 0 else None
    return entry


def build_report(
    steps: list[dict[str, Any]], bad_records: int, source_names: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    first, last = steps[0], steps[-1]
    sources = {}
    for name in source_names:
        src_in = first["by_source"].get(name, {})
        src_out = last["by_source"].get(name, {})
        sources[name] = {
            "docs_in": src_in.get("docs_in", 0),
            "bytes_in": src_in.get("bytes_in", 0),
            "docs_out": src_out.get("docs_out", 0),
            "bytes_out": src_out.get("bytes_out", 0),
        }
    total_bytes = sum(s["bytes_out"] for s in sources.values()) or 1
    mixture = {name: round(s["bytes_out"] / total_bytes, 4) for name, s in sources.items()}
    return {
        "docs_in": first["docs_in"],
        "bytes_in": first["bytes_in"],
        "docs_out": last["docs_out"],
        "bytes_out": last["bytes_out"],
        "bad_records_skipped": bad_records,
        "steps": steps,
        "sources": sources,
        "mixture_bytes_fraction": mixture,
        **extra,
    }


def plot_funnel(report: dict[str, Any], path: Path) -> None:
    """Documents remaining after each step, as horizontal bars (top: input)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["input"] + [s["step"] for s in report["steps"]]
    docs = [report["docs_in"]] + [s["docs_out"] for s in report["steps"]]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.2))
    bars = ax.barh(range(len(labels)), docs, color="#4c72b0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.set_title("dataset funnel: documents after each step")
    for bar, n in zip(bars, docs, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {n:,}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
