"""`llmforge data build`: run the recipe's `[data]` pipeline and write the `dataset` artifact atomically.

Intermediate files live in `<run>/.dataset-work/` until the artifact is complete, so a re-run after a crash
resumes finished datatrove tasks; the work dir is dropped when the recipe's `[data]` table changes (a
stale half-build of another recipe must not leak in) and removed after success.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from llmforge.artifacts import DATASET_DIR, TIMINGS, atomic_dir, write_json, write_manifest
from llmforge.artifacts.dataset import DATA_DIR, REPORT
from llmforge.console import UserError, human_bytes, info
from llmforge.data.config import DataConfig
from llmforge.data.pipeline import (
    EXAMPLES_DIR,
    MIN_BYTES_PER_WORKER,
    OUTPUT_DIR,
    local_workers,
    minhash_threshold,
    plan_stages,
    run_stages,
)
from llmforge.data.registry import validate_steps, with_html_extraction
from llmforge.data.report import build_report, collect_steps, plot_funnel, split_timings
from llmforge.data.sources import input_bytes
from llmforge.data.steps.examples import read_removed_documents

WORK_DIR = ".dataset-work"
FUNNEL = "funnel.png"
DROPPED_DIR = "dropped"  # a capped sample of the pages html_to_text dropped, whole: <step>.jsonl


def work_dir(run_dir: Path) -> Path:
    return run_dir / WORK_DIR


def _fingerprint(cfg: DataConfig, seed: int) -> str:
    """What decides the work dir's contents: everything but how many processes run it."""
    table = cfg.model_dump(
        mode="json",
        exclude={
            "workers",
            "executor",
            *(k for k in DataConfig.model_fields if k.startswith(("slurm_", "ray_"))),
        },
    )
    table["tasks"] = cfg.tasks or cfg.workers
    return hashlib.sha256(json.dumps([table, seed], sort_keys=True).encode()).hexdigest()


def _prepare_work(work: Path, fingerprint: str) -> bool:
    """Create the work dir; True when it holds a resumable build of the same `[data]` table."""
    marker = work / "fingerprint"
    if work.exists() and (not marker.is_file() or marker.read_text() != fingerprint):
        shutil.rmtree(work)
    resumed = work.exists()
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    return resumed


def build_dataset(cfg: DataConfig, run_dir: Path, seed: int, *, verbose: bool = False) -> dict[str, Any]:
    """Run the pipeline and write `run_dir/dataset`; returns the report (also written as report.json)."""
    steps = with_html_extraction(validate_steps(cfg.steps, [s.name for s in cfg.sources]), cfg.sources)
    work = work_dir(run_dir)
    resumed = _prepare_work(work, _fingerprint(cfg, seed))
    stages = plan_stages(cfg, steps, work, seed)
    workers = local_workers(cfg.workers, input_bytes(cfg.sources)) if cfg.executor == "local" else cfg.workers
    if workers < cfg.workers:
        per_worker = human_bytes(MIN_BYTES_PER_WORKER)
        info(f"data.workers = {cfg.workers}: {workers} used (one per {per_worker} of input; same dataset)")
    start = time.perf_counter()
    run_stages(stages, cfg, workers=workers, verbose=verbose)
    elapsed = time.perf_counter() - start

    step_stats, bad_records = collect_steps(stages, work / EXAMPLES_DIR)
    extra: dict[str, Any] = {
        "seconds": round(elapsed, 2),
        "resumed": resumed,
        "workers": workers,
        "workers_requested": cfg.workers,
        "tasks": cfg.tasks or cfg.workers,
        "executor": cfg.executor,
    }
    minhash = [(i, o) for i, (kind, o) in enumerate(steps) if kind == "minhash"]
    if minhash:
        extra["minhash_jaccard_threshold"] = {
            f"{i:02d}.minhash": round(minhash_threshold(o.bands, o.rows), 4) for i, o in minhash
        }
    report = build_report(step_stats, bad_records, [s.name for s in cfg.sources], extra)
    for name, counts in report["sources"].items():
        if counts["docs_in"] == 0:
            raise UserError(f"source {name}: no documents read (empty source, or no record has text)")
    shards = sorted((work / OUTPUT_DIR).glob("*.jsonl.gz"))
    if report["docs_out"] == 0 or not shards:
        raise UserError(
            "data.steps: every document was removed; nothing left to write (see the step options)"
        )

    with atomic_dir(run_dir / DATASET_DIR) as tmp:
        (tmp / DATA_DIR).mkdir()
        for shard in shards:
            _clear_gzip_mtime(shard)
            os.link(shard, tmp / DATA_DIR / shard.name)
        contents, timings = split_timings(report)
        write_json(tmp / REPORT, contents)
        write_json(tmp / TIMINGS, timings)
        plot_funnel(report, tmp / FUNNEL)
        _write_dropped_samples(steps, work / EXAMPLES_DIR, tmp / DROPPED_DIR)
        write_manifest(
            tmp,
            "dataset",
            recipe=cfg.model_dump(mode="json"),
            inputs=_input_paths(cfg),
            stats={k: report[k] for k in ("docs_in", "bytes_in", "docs_out", "bytes_out")}
            | {"mixture_bytes_fraction": report["mixture_bytes_fraction"]},
        )
    shutil.rmtree(work, ignore_errors=True)
    return report


def _write_dropped_samples(steps: list[tuple[str, Any]], examples: Path, out: Path) -> None:
    for i, (kind, opts) in enumerate(steps):
        label = f"{i:02d}.{kind}"
        docs = read_removed_documents(examples / label, getattr(opts, "max_dropped_samples", 0))
        if docs:
            out.mkdir(exist_ok=True)
            (out / f"{label}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


def _clear_gzip_mtime(path: Path) -> None:
    """Zero the gzip header's MTIME (RFC 1952 §2.3.1: 0 = no time stamp; the field is outside the CRC), so
    the same documents give the same bytes, and the same content hash, whenever they are built."""
    with open(path, "r+b") as f:
        header = f.read(8)
        if header[:2] == b"\x1f\x8b" and header[4:8] != b"\0\0\0\0":
            f.seek(4)
            f.write(b"\0\0\0\0")


def _input_paths(cfg: DataConfig) -> list[str]:
    """Local source paths (hashed into the manifest); the stdlib is named by the interpreter in `environment`."""
    return [s.path for s in cfg.sources if s.type != "python-stdlib" and s.path and Path(s.path).exists()]
