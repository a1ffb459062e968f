"""Task names: llmforge's offline task definitions, the presets, and resolving a user's task list.

Offline, a task is one of the YAMLs shipped in `tasks/` plus a reader in `task_data` for its public data
files. `write_include_dir` writes the rows as JSON Lines next to a copy of the YAML whose data path is made
absolute, so `lm_eval.tasks.TaskManager(include_path=DIR)` (or `lm_eval --include_path DIR`) runs them;
include paths take precedence over the harness's built-in tasks of the same name. Online, the names go to
the harness's own registry unchanged.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llmforge.console import UserError
from llmforge.eval import task_data

_FUNCTION = re.compile(r"!function\s+(\w+)\.\w+")


@dataclass(frozen=True)
class OfflineTask:
    name: str
    read: Callable[[Path], list[dict]]
    files: str  # the public files it reads, relative to --data-dir (for help and error messages)


OFFLINE_TASKS: dict[str, OfflineTask] = {
    t.name: t
    for t in (
        OfflineTask("piqa", task_data.piqa, "piqa/valid.jsonl + piqa/valid-labels.lst"),
        OfflineTask("hellaswag", task_data.hellaswag, "hellaswag/hellaswag_val.jsonl"),
        OfflineTask("arc_easy", task_data.arc("Easy"), "arc/ARC-Easy-Test.jsonl"),
        OfflineTask("arc_challenge", task_data.arc("Challenge"), "arc/ARC-Challenge-Test.jsonl"),
        OfflineTask("openbookqa", task_data.openbookqa, "openbookqa/test.jsonl"),
        OfflineTask("winogrande", task_data.winogrande, "winogrande/dev.jsonl"),
        OfflineTask("boolq", task_data.boolq, "boolq/dev.jsonl"),
        OfflineTask("storycloze", task_data.storycloze, "storycloze/cloze_test_val__spring2016.csv"),
        OfflineTask("truthfulqa_mc1", task_data.truthfulqa, "truthfulqa/TruthfulQA.csv"),
        OfflineTask("truthfulqa_mc2", task_data.truthfulqa, "truthfulqa/TruthfulQA.csv"),
        OfflineTask("gsm8k", task_data.gsm8k, "gsm8k/test.jsonl"),
        OfflineTask("wikitext", task_data.wikitext, "wikitext2/valid.txt"),
        OfflineTask("crows_pairs", task_data.crows_pairs, "crows_pairs/crows_pairs_anonymized.csv"),
        OfflineTask("bbq", task_data.bbq, "bbq/bbq_sample.jsonl"),
        OfflineTask("ethos", task_data.ethos, "ethos/Ethos_Dataset_Binary.csv"),
    )
}

# Task suites from the literature, usable wherever a task name is.
PRESETS: dict[str, tuple[str, ...]] = {
    # The multiple-choice part of GPT-3's zero-shot suite (Brown et al., 2020, §3) as re-run for OPT
    # (Zhang et al., 2022, §3.1), restricted to the tasks whose data is public.
    "gpt3-zeroshot": (
        "hellaswag",
        "storycloze",
        "piqa",
        "arc_easy",
        "arc_challenge",
        "openbookqa",
        "winogrande",
        "boolq",
    ),
    # What the files in ../shared/data support, end to end.
    "shared-data": ("piqa", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k", "wikitext"),
    # Social bias scored by likelihood: CrowS-Pairs (Nangia et al. 2020), BBQ (Parrish et al. 2022) and
    # few-shot hate-speech detection on ETHOS (Mollas et al. 2022); their files are in ../shared/data too.
    "social-bias": ("crows_pairs", "bbq", "ethos"),
}


def expand(names: list[str]) -> list[str]:
    """Task names with presets replaced by their tasks, in order, without duplicates."""
    out: list[str] = []
    for name in names:
        for task in PRESETS.get(name, (name,)):
            if task not in out:
                out.append(task)
    return out


def check_known(names: list[str], known: list[str]) -> None:
    """Exit 2 on the first name that is neither a task nor a preset, listing close names."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = (
                f"; did you mean: {', '.join(close)}"
                if close
                else f"; known: {', '.join(sorted(known)[:30])}"
            )
            raise UserError(f"--tasks: unknown task '{name}'{hint}")


def task_rows(name: str, data_dir: Path) -> list[dict]:
    rows = OFFLINE_TASKS[name].read(data_dir)
    if not rows:
        raise UserError(f"{data_dir / OFFLINE_TASKS[name].files}: no rows for task '{name}'")
    return rows


def check_fewshot(name: str, rows: list[dict], num_fewshot: int) -> None:
    """Few-shot examples come from the evaluated file itself, the current document excluded."""
    pool = len(rows) - 1
    if num_fewshot > pool:
        raise UserError(
            f"--num-fewshot {num_fewshot}: task '{name}' has only {pool} few-shot examples to draw from"
        )


def write_include_dir(names: list[str], data_dir: Path, out: Path, num_fewshot: int = 0) -> dict[str, int]:
    """Write one YAML + one JSONL per offline task into `out`; returns the number of documents per task."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in names:
        rows = task_rows(name, data_dir)
        check_fewshot(name, rows, num_fewshot)
        data_file = (out / f"{name}.jsonl").resolve()
        with open(data_file, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tasks_dir = resources.files("llmforge.eval").joinpath("tasks")
        template = tasks_dir.joinpath(f"{name}.yaml").read_text()
        (out / f"{name}.yaml").write_text(template.replace("@DATA_FILE@", str(data_file)))
        for module in set(_FUNCTION.findall(template)):  # `!function m.f` is looked up beside the YAML
            (out / f"{module}.py").write_text(tasks_dir.joinpath(f"{module}.py").read_text())
        counts[name] = len(rows)
    return counts
