"""One run of a trl trainer (reward, DPO, RLOO, GRPO): its folders, resume, the training call with progress and
save-then-stop on SIGTERM, and the report artifact.

Layout under the trainer's out (default `<rlhf.out>/<name>`):
  trainer/checkpoint-N/   trl/transformers checkpoints for resume; trainer/run.json holds the resume key
  trainer/metrics.jsonl   one line per logged step, rewound to the checkpoint on resume
  checkpoint/             the result (`checkpoint` artifact)
  report/                 results.json, metrics.jsonl and the plots (`report` artifact)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, ensure_writable, write_json, write_manifest
from llmforge.console import info
from llmforge.hf_trainer import RUN_FILE, read_history, resume_point
from llmforge.rlhf.common import (
    CHECKPOINT_DIR,
    METRICS,
    REPORT_DIR,
    TRAINER_DIR,
    rlhf_config,
    seed_of,
    trainer_out,
)


@dataclass
class TrlJob:
    recipe: Any
    name: str  # reward | dpo | rloo | grpo
    out: Path
    seed: int
    resume_key: dict[str, Any]
    inputs: list[str]
    resume_from: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> Any:
        return rlhf_config(self.recipe)

    @property
    def keys(self) -> Any:
        return getattr(self.cfg, self.name)

    @property
    def trainer_dir(self) -> Path:
        return self.out / TRAINER_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / CHECKPOINT_DIR

    @property
    def report_dir(self) -> Path:
        return self.out / REPORT_DIR


def start(recipe: Any, name: str, resume_key: dict[str, Any], inputs: list[str], *, fresh: bool) -> TrlJob:
    """Check the output folder and decide whether the run resumes (UserError when its inputs changed)."""
    out = trainer_out(recipe, name)
    ensure_writable(out)
    job = TrlJob(recipe, name, out, seed_of(recipe), resume_key, [str(i) for i in inputs])
    job.resume_from = resume_point(
        job.trainer_dir,
        job.checkpoint_dir,
        resume_key,
        fresh=fresh,
        out_key=f"rlhf.{name}.out",
        what=f"rlhf {name} run",
    )
    if fresh:  # only what this trainer writes: the folder may hold other files
        for sub in (TRAINER_DIR, CHECKPOINT_DIR, REPORT_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    return job


def digest(rows: list[Any]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def record_resume_key(job: TrlJob) -> None:
    job.trainer_dir.mkdir(parents=True, exist_ok=True)
    write_json(job.trainer_dir / RUN_FILE, {"resume_key": job.resume_key})


def train(job: TrlJob, trainer: Any, label: str) -> tuple[int, float, int]:
    """(signal that stopped it or 0, seconds, peak memory of the loop): trainer.train with our progress bar."""
    from transformers import PrinterCallback

    from llmforge.hf_trainer import Progress
    from llmforge.stop_signal import StopSignal

    trainer.remove_callback(PrinterCallback)  # it prints every log dict on stdout, which is for results
    started = time.perf_counter()
    with StopSignal() as stop:
        recorder = Progress(job.trainer_dir / METRICS, stop, job.resume_from, label=label)
        trainer.add_callback(recorder)
        trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)
    if stop.signum:
        info(
            f"[yellow]stopped[/] at step {trainer.state.global_step} (checkpoint saved); run the same command to resume"
        )
    return stop.signum, time.perf_counter() - started, recorder.peak_memory


def history(job: TrlJob) -> list[dict[str, Any]]:
    return read_history(job.trainer_dir / METRICS)


def write_report(
    job: TrlJob,
    results: dict[str, Any],
    rows: list[dict[str, Any]],
    plots: dict[str, Callable[[Path], None]],
    stats_keys: tuple[str, ...],
) -> Path:
    """report/: results.json, metrics.jsonl and one PNG per `plots` entry (name → draw(path)); the trainer's
    resume state is deleted once the report and the checkpoint are whole."""
    with atomic_dir(job.report_dir) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        for name, draw in plots.items():
            draw(tmp / name)
        stats = {k: results[k] for k in stats_keys if k in results}
        write_manifest(tmp, "report", recipe=job.recipe.to_dict(), inputs=[job.checkpoint_dir], stats=stats)
    shutil.rmtree(job.trainer_dir, ignore_errors=True)
    return job.report_dir


def plot_curves(rows: list[dict], keys: dict[str, str], png: Path, title: str, ylabel: str) -> None:
    """Line plot of logged metrics by step: `keys` maps a metrics key to its legend label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label in keys.items():
        points = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
        if points:
            style = "o-" if key.startswith("eval_") else "-"
            ax.plot([s for s, _ in points], [v for _, v in points], style, label=label, alpha=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100, metadata={"Software": None})
    plt.close(fig)


def pair_counts(job: TrlJob) -> dict[str, int]:
    """Pairs read per split, and kept once trl dropped the over-long ones."""
    data = job.extra["data"]
    kept = {f"{k}_kept": v for k, v in job.extra["kept"].items()}
    return {"train_read": len(data.train), "val_read": len(data.val), **kept}


def write_policy_checkpoint(job: TrlJob, model: Any, tokenizer: Any, stats: dict) -> Path:
    """The trained policy as a `checkpoint` artifact (a full HF causal-LM dir with its tokenizer, chat template
    and generation config), its manifest naming the policy it started from and the data files."""
    with atomic_dir(job.checkpoint_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        write_manifest(
            tmp,
            "checkpoint",
            recipe=job.recipe.to_dict(),
            inputs=job.inputs,
            stats={**stats, "variant": "full"},
        )
    return job.checkpoint_dir


def plot_panels(
    rows: list[dict], panels: tuple[tuple[str, str], ...], png: Path, title: str, cols: int = 3
) -> None:
    """One small line plot per (metric key, label) by step: the online trainers' and PPO's report plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(10, 2.7 * nrows + 0.6), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100, metadata={"Software": None})
    plt.close(fig)
