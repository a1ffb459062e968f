"""The data pipeline as datatrove executors: readers → steps → writer, cut into stages at dedup steps.

Dedup is global, so it cannot run inside one streaming pass. Each `exact_dedup` / `minhash` step ends the
stage before it (whose documents are written to the work dir, one file per task, next to their dedup
signatures), runs datatrove's middle dedup stages, and starts the next stage by re-reading those files and
applying the dedup filter — datatrove's own multi-stage recipe. Every stage is one datatrove executor with
a logging dir under the work dir, so re-running after a crash skips the tasks that had finished.
"""

from __future__ import annotations

import os

# datatrove's dedup stages draw tqdm bars of their own; tqdm reads this when it is first imported.
os.environ.setdefault("TQDM_DISABLE", "1")

import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.filters.base_filter import BaseFilter  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from loguru import logger  # noqa: E402

from llmforge.console import UserError, progress, rate_text  # noqa: E402
from llmforge.data.config import DataConfig  # noqa: E402
from llmforge.data.registry import DEDUP_STEPS, build_step  # noqa: E402
from llmforge.data.sources import build_reader  # noqa: E402
from llmforge.data.steps.examples import RemovedExamples  # noqa: E402
from llmforge.data.steps.meter import Metered, Timed  # noqa: E402
from llmforge.data.steps.mixture import MixtureSampler  # noqa: E402

OUTPUT_DIR = "output"
EXAMPLES_DIR = "examples"  # a few removed documents per step and drop reason (steps/examples.py)
SLURM_JOBS = "slurm-jobs"  # in the work dir's logs/: the ids of the last Slurm submission, one a line


def minhash_threshold(bands: int, rows: int) -> float:
    """Jaccard similarity at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r)
    (Leskovec, Rajaraman & Ullman, Mining of Massive Datasets, §3.4.3)."""
    return (1 / bands) ** (1 / rows)


class _RankFileReader(JsonlReader):
    """Reads back exactly the file its own task wrote in the stage before, so document order per task
    matches the dedup signatures (a task that wrote nothing reads nothing, instead of shifting files)."""

    name = "📖 stage input"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        name = f"{rank:05d}.jsonl"
        files = [name] if self.data_folder.exists(name) else []
        yield from self.read_files_shard(files)


def _doc_text(doc) -> str:
    return doc.text


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int
    logs: Path
    depends: int | None = None
    metered: list[str] = field(default_factory=list)
    timed: dict[str, str] = field(default_factory=dict)  # stats entry of a `Timed` step → label it times


class _QuietLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor with its console logging off (logs still go to files with --debug)."""

    def __init__(self, *args, verbose: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.verbose = verbose

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        if not self.verbose:
            logger.disable("datatrove")
        return super()._run_for_rank(rank, local_rank, node_rank)


def _dedup_parts(kind: str, opts: Any, work: Path, seed: int, examples: RemovedExamples):
    """(signature step, middle stages [(name, steps, tasks)], filter step) for one dedup step."""
    if kind == "exact_dedup":
        from datatrove.pipeline.dedup.exact_dedup import (
            ExactDedupConfig,
            ExactDedupFilter,
            ExactDedupSignature,
            ExactFindDedups,
        )

        from llmforge.data.steps.dedup import id_priority

        cfg = ExactDedupConfig(content_getter=_doc_text, document_priority=id_priority)
        return (
            ExactDedupSignature(str(work / "sigs"), cfg),
            [("find", [ExactFindDedups(str(work / "sigs"), str(work / "dups"), cfg)], 1)],
            ExactDedupFilter(str(work / "dups"), cfg, exclusion_writer=examples),
        )
    if kind == "line_dedup":
        from datatrove.pipeline.dedup.sentence_dedup import (
            SentDedupConfig,
            SentenceDedupFilter,
            SentenceDedupSignature,
            SentenceFindDedups,
        )

        cfg = SentDedupConfig(
            n_sentences=opts.span,
            split_sentences=opts.unit == "sentence",
            min_doc_words=opts.min_doc_words,
            min_num_sentences=opts.min_sentences,
        )
        # no exclusion writer: datatrove's hands it the edited documents too, not only the removed ones
        return (
            SentenceDedupSignature(str(work / "sigs"), config=cfg),
            [("find", [SentenceFindDedups(str(work / "sigs"), str(work / "dups"), config=cfg)], 1)],
            SentenceDedupFilter(str(work / "dups"), config=cfg),
        )
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupFilter,
    )

    from llmforge.data.steps.dedup import FastMinhashSignature, StableMinhashCluster

    cfg = MinhashConfig(
        n_grams=opts.shingle_size, num_buckets=opts.bands, hashes_per_bucket=opts.rows, seed=seed
    )
    return (
        FastMinhashSignature(str(work / "sigs"), cfg),
        [
            (
                "buckets",
                [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=cfg)],
                opts.bands,
            ),
            (
                "cluster",
                [StableMinhashCluster(str(work / "buckets"), str(work / "remove"), str(work / "sigs"))],
                1,
            ),
        ],
        MinhashDedupFilter(str(work / "remove"), exclusion_writer=examples),
    )


def plan_stages(cfg: DataConfig, steps: list[tuple[str, Any]], work: Path, seed: int) -> list[Stage]:
    """Cut the step list into executor stages (see the module docstring)."""
    from datatrove.pipeline.writers import JsonlWriter

    tasks = cfg.tasks or cfg.workers
    readers = [build_reader(s, cfg.on_bad_record) for s in cfg.sources]
    stages: list[Stage] = []
    current: list = list(readers)
    metered: list[str] = []
    timed_here: dict[str, str] = {}
    passes = 1
    for i, (kind, opts) in enumerate(steps):
        label = f"{i:02d}.{kind}"
        if kind == "html_to_text":  # every dropped page is named in the report, a sample kept whole
            examples = RemovedExamples(
                work / EXAMPLES_DIR / label, kind, every_id=True, full_documents=opts.max_dropped_samples
            )
        else:
            examples = RemovedExamples(work / EXAMPLES_DIR / label, default_reason=kind)
        if kind not in DEDUP_STEPS:
            step = build_step(kind, opts)
            if (
                isinstance(step, BaseFilter) or kind == "html_to_text"
            ):  # these hand each removed document here
                step.exclusion_writer = examples
            current.append(Metered(step, label, only=opts.sources))
            metered.append(label)
            continue
        dedup_dir = work / f"dedup-{i:02d}"
        signature, middle, dedup_filter = _dedup_parts(kind, opts, dedup_dir, seed, examples)
        # uncompressed: the copy lives only until the build ends, and gzip took most of a dedup step's time
        writer = JsonlWriter(str(dedup_dir / "input"), output_filename="${rank}.jsonl", compression=None)
        timed = [Timed(writer, f"{label} input"), Timed(signature, f"{label} signature")]
        stages.append(
            Stage(
                f"pass {passes}: up to {label}",
                current + timed,
                tasks,
                work / "logs" / f"{i:02d}-signature",
                metered=metered,
                timed=timed_here | {t.name: label for t in timed},
            )
        )
        for name, middle_steps, middle_tasks in middle:
            timed = [Timed(step, f"{label} {name}") for step in middle_steps]
            stages.append(
                Stage(
                    f"{label} {name}",
                    timed,
                    middle_tasks,
                    work / "logs" / f"{i:02d}-{name}",
                    timed={t.name: label for t in timed},
                )
            )
        read_back = Timed(_RankFileReader(str(dedup_dir / "input")), f"{label} read back")
        current = [read_back, Metered(dedup_filter, label)]
        passes += 1
        metered = [label]
        timed_here = {read_back.name: label}
    weights = {s.name: (s.weight, s.max_epochs) for s in cfg.sources}
    current += [
        Metered(MixtureSampler(weights, seed), "mixture"),
        JsonlWriter(str(work / OUTPUT_DIR), output_filename="${rank}.jsonl.gz"),
    ]
    stages.append(
        Stage(
            f"pass {passes}: to output",
            current,
            tasks,
            work / "logs" / "final",
            metered=[*metered, "mixture"],
            timed=timed_here,
        )
    )
    return stages


MIN_BYTES_PER_WORKER = 8 * 2**20


def local_workers(requested: int, input_bytes: int | None) -> int:
    """Worker processes for the local executor: as asked, but one per `MIN_BYTES_PER_WORKER` of input at most
    (unknown size, e.g. an `hf` source: as asked). Each stage with more than one worker starts a process pool
    and a manager process; on a few MB that costs more than the work it shares. The task count, which shapes
    the shards, does not change, so neither does the dataset."""
    if input_bytes is None:
        return requested
    return max(1, min(requested, input_bytes // MIN_BYTES_PER_WORKER))


def _hold_console_across_fork() -> None:
    """Pool workers are forked (they inherit the imported modules; spawn and forkserver re-import spaCy,
    datatrove and the pipeline in every worker of every stage, which made 2 workers slower than 1). The fork
    happens in the executor's thread while the progress bar redraws from others: holding the console's lock
    across the fork keeps a child from inheriting it locked mid-write."""
    from llmforge.console import console

    lock = console._lock  # rich's RLock around every write to the terminal
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release)


_hold_console_across_fork()


def run_stages(
    stages: list[Stage], cfg: DataConfig, *, workers: int | None = None, verbose: bool = False
) -> None:
    """Run every stage in order on the configured executor, with a progress bar over tasks; `workers`: local
    worker processes (default `cfg.workers`)."""
    workers = workers or cfg.workers
    if not verbose:
        logger.disable("datatrove")
    if cfg.executor == "slurm":
        _run_slurm(stages, cfg)
        return
    if cfg.executor == "ray":
        _run_ray(stages, cfg)
        return
    for stage in stages:
        executor = _QuietLocalExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            workers=min(workers, stage.tasks),
            logging_dir=str(stage.logs),
            start_method="fork",
            verbose=verbose,
        )
        _run_with_progress(executor, stage)


def _run_with_progress(executor, stage: Stage) -> None:
    done_dir = stage.logs / "completions"
    errors: list[BaseException] = []

    def target():
        try:
            executor.run()
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread below
            errors.append(e)

    thread = threading.Thread(target=target, daemon=True)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(stage.name, total=stage.tasks, rate="")
        thread.start()
        while thread.is_alive():
            thread.join(0.25)
            done = len(list(done_dir.glob("*"))) if done_dir.is_dir() else 0
            bar.update(task, completed=done, rate=rate_text(done, time.perf_counter() - start, "tasks"))
        if errors:  # the error line stands alone (one line for a user error, as everywhere)
            bar.update(task, visible=False)
    if errors:
        err = errors[0]
        if isinstance(err, UserError):
            raise err
        raise RuntimeError(f"{stage.name}: {type(err).__name__}: {err} (logs: {stage.logs}/logs)") from err


def stage_done(stage: Stage) -> bool:
    """Every task of the stage left its datatrove completion marker (`completions/<rank>`)."""
    done = stage.logs / "completions"
    return all((done / f"{rank:05d}").is_file() for rank in range(stage.tasks))


def _run_slurm(stages: list[Stage], cfg: DataConfig, poll_s: float = 30.0) -> None:
    """Submit → wait (`slurm_wait`) or re-run → assemble. Stages whose tasks are all done are not submitted
    (datatrove skips them); when every stage is done this returns at once and the caller assembles the
    dataset. Otherwise the stages go to Slurm as job arrays chained by `afterok`/`afterany` dependencies;
    then either wait for every completion marker, or raise `SlurmSubmitted` telling the user to run the same
    command again once the jobs end. The job ids are kept in the work dir: a re-run while any of them is still
    queued or running is refused, as datatrove would resubmit their unfinished tasks beside them."""
    from datatrove.executor import SlurmPipelineExecutor

    if not cfg.slurm_partition:
        raise UserError('data.slurm_partition: required with data.executor = "slurm"')
    if all(stage_done(s) for s in stages):
        return
    jobs_file = stages[0].logs.parent / SLURM_JOBS
    earlier = jobs_file.read_text().split() if jobs_file.is_file() else []
    if earlier and slurm_jobs_pending(earlier):
        raise UserError(
            f"data: Slurm jobs {', '.join(earlier)} of the last submission are still queued or running; run the "
            "same command again when they finish (or set data.slurm_wait = true to wait for them)"
        )
    executors, previous = [], None
    for stage in stages:
        previous = SlurmPipelineExecutor(
            stage.pipeline,
            tasks=stage.tasks,
            time=cfg.slurm_time,
            partition=cfg.slurm_partition,
            logging_dir=str(stage.logs),
            job_name=f"llmforge-{stage.logs.name}",
            depends=previous,
            workers=cfg.slurm_max_parallel or -1,  # the array limit %N; -1: no limit
            # the job runs datatrove's `launch_pickled_pipeline` script, found beside this Python
            env_command=f'export PATH="{Path(sys.executable).parent}:$PATH"',
        )
        executors.append(previous)
    previous.run()  # submits the stages that are not done, each after the one before
    job_ids = [str(e.job_id) for e in executors if e.job_id not in (None, -1)]
    jobs_file.write_text("\n".join(job_ids) + "\n")
    if not cfg.slurm_wait:
        raise SlurmSubmitted(
            f"submitted {len(job_ids)} Slurm job(s) ({', '.join(job_ids)}); run the same command again when "
            "they finish to assemble the dataset (finished tasks are not re-run), or set data.slurm_wait = true"
        )
    _wait_for_slurm(stages, job_ids, poll_s)


def _wait_for_slurm(stages: list[Stage], job_ids: list[str], poll_s: float) -> None:
    """Poll the completion markers and `squeue`: after 1 s, then each wait 1.5× longer, up to `poll_s`."""
    delay = 1.0
    with progress() as bar:
        task = bar.add_task("slurm: stages done", total=len(stages), rate="")
        while True:
            # asked before reading the markers: a task's marker is written before its job ends
            pending = slurm_jobs_pending(job_ids)
            done = sum(stage_done(s) for s in stages)
            bar.update(task, completed=done)
            if done == len(stages):
                return
            if not pending:
                missing = [s for s in stages if not stage_done(s)]
                raise RuntimeError(
                    f"Slurm jobs {', '.join(job_ids)} ended but {missing[0].name} has unfinished tasks "
                    f"(logs: {missing[0].logs}/logs); run the same command again to resubmit them"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, poll_s)


def slurm_jobs_pending(job_ids: list[str]) -> bool:
    """Whether any of the jobs is still queued or running (`squeue`)."""
    import subprocess

    out = subprocess.run(
        ["squeue", "--noheader", "--format=%i", "--jobs", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(out.stdout.strip())


class SlurmSubmitted(Exception):
    """Raised after a Slurm submission: the dataset is assembled by a later run."""


def _run_ray(stages: list[Stage], cfg: DataConfig) -> None:
    """Each stage on the Ray cluster in turn, `data.workers` tasks at a time, with the local executor's
    progress bar (it counts datatrove's completion markers, which Ray workers write to the shared run
    directory). datatrove only warns when tasks fail, so a stage left unfinished is an error here."""
    try:
        import ray
    except ImportError:
        raise UserError(
            'data.executor = "ray" needs the `ray` package (pip install "llmforge[ray]")'
        ) from None
    from datatrove.executor import RayPipelineExecutor

    _connect_ray(ray, cfg.ray_address)
    for stage in stages:
        executor = RayPipelineExecutor(
            stage.pipeline, tasks=stage.tasks, workers=cfg.workers, logging_dir=str(stage.logs)
        )
        _run_with_progress(executor, stage)
        if not stage_done(stage):
            raise RuntimeError(
                f"{stage.name}: Ray tasks failed (logs: {stage.logs}/logs); run the same command again to "
                "re-run only the unfinished tasks"
            )


def _connect_ray(ray, address: str | None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    where = f"data.ray_address = {address!r}" if address else "a local Ray instance"
    fix = "start a head there with `ray start --head`, or fix data.ray_address / $RAY_ADDRESS"
    problem = _unreachable(address) if address else None
    if problem:  # ray.init would retry a dead address for minutes
        raise UserError(f"{where}: no Ray head answers ({problem}); {fix}")
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
    except (ConnectionError, ValueError) as e:
        raise UserError(f"{where}: cannot connect to Ray ({e}); {fix}") from None


def _unreachable(address: str) -> str | None:
    """Why a "host:port" head address takes no TCP connection (None: it does, or it is "auto"/"ray://")."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None
