"""What a pretraining run leaves besides checkpoints: the environment snapshot at the start, and the
`report` artifact (results.json, report.md, loss/LR plot) at the end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from llmforge.artifacts import REPORTS_DIR, atomic_dir, environment, write_json, write_manifest
from llmforge.recipe import Recipe

REPORT_NAME = "pretrain"
ENTROPY_SAMPLE_TOKENS = 50_000_000


def unigram_entropy(shards: Any, vocab_size: int, limit: int = ENTROPY_SAMPLE_TOKENS) -> float:
    """Entropy (nats/token) of the token frequencies in the first `limit` tokens of a split: the loss of
    the best model that ignores context, so a trained model's loss must fall below it."""
    import numpy as np

    counts = np.zeros(vocab_size, dtype=np.int64)
    n = min(len(shards), limit)
    chunk = 1 << 22
    for start in range(0, n, chunk):
        counts += np.bincount(shards.read(start, min(chunk, n - start)), minlength=vocab_size)[:vocab_size]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def write_snapshot(recipe: Recipe, run_dir: Path, launcher: dict[str, str]) -> None:
    """The resolved recipe and the environment (packages, git commit, hardware, command line, and `launcher`:
    what the launcher passed, as read before llmforge took over its FSDP/compile settings)."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.toml").write_text(recipe.to_toml())
    env = environment()
    env["hardware"] = {
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "torch_threads": torch.get_num_threads(),
    }
    env["launcher"] = launcher
    write_json(run_dir / "environment.json", {"stage": "pretrain", **env})


def write_report(
    recipe: Recipe, results: dict[str, Any], metrics: list[dict[str, Any]], inputs: list[Path]
) -> Path:
    from llmforge.pretrain.metrics import plot_curves

    path = recipe.run_dir / REPORTS_DIR / REPORT_NAME
    with atomic_dir(path) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "report.md").write_text(_markdown(recipe, results))
        if any("loss" in r for r in metrics):
            plot_curves(metrics, tmp / "loss.png", results["unigram_entropy"])
        write_manifest(
            tmp,
            "report",
            recipe=recipe.to_dict(),
            inputs=inputs,
            stats={k: results[k] for k in ("final_val_loss", "steps", "tokens_seen", "params")},
        )
    return path


def _markdown(recipe: Recipe, r: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return f"{v:,}" if isinstance(v, int) else str(v)

    rows = "\n".join(f"| {k} | {fmt(v)} |" for k, v in r.items() if not isinstance(v, (dict, list)))
    return (
        f"# Pretraining report: {recipe.run.name}\n\n"
        f"Validation loss {fmt(r['final_val_loss'])} nats/token against a unigram entropy of "
        f"{fmt(r['unigram_entropy'])} (the loss of a model that ignores context).\n\n"
        f"| metric | value |\n| --- | --- |\n{rows}\n\n![loss and learning rate](loss.png)\n"
    )
