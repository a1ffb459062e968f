"""The `report` artifact of `finetune sft`: results.json, metrics.jsonl, loss.png (train and validation loss
per step), and the summary table's rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, write_json, write_manifest
from llmforge.console import human_bytes


def write_report(path: Path, results: dict, rows: list[dict], checkpoint: Path, recipe: dict) -> Path:
    with atomic_dir(path) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        plot_losses(rows, tmp / "loss.png")
        stats = {k: results[k] for k in ("val_loss", "best_val_loss", "steps", "method")}
        write_manifest(tmp, "report", recipe=recipe, inputs=[checkpoint], stats=stats)
    return path


def plot_losses(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], label="train", alpha=0.7)
    if val:
        ax.plot([s for s, _ in val], [v for _, v in val], "o-", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / trained token)")
    ax.set_title("instruction tuning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100, metadata={"Software": None})
    plt.close(fig)


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    train, val = results["train"], results["val"]
    return {
        "method": results["method"],
        "steps": results["steps"],
        "val loss (first → last eval)": f"{results['first_val_loss']:.4f} → {results['val_loss']:.4f}",
        "trainable / total params": f"{results['trainable_params']:,} / {results['total_params']:,}",
        "train examples (kept / read)": f"{train['kept']} / {train['examples']}",
        "trained tokens (train)": train["trained_tokens"],
        "truncated / dropped (train)": f"{train['truncated']} / {train['dropped_too_long'] + train['dropped_untrained']}",
        "val examples": val["kept"],
        "chat template": results["chat_template"],
        "planned memory": human_bytes(results["planned_memory"]["total"]),
        "peak memory": human_bytes(results["peak_memory"]),
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
