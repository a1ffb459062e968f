"""The `report` artifact of a classification fine-tune: results.json, metrics.jsonl, confusion-matrix PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmforge.artifacts import atomic_dir, write_json, write_manifest


def write_report(path: Path, results: dict, history: list[dict], checkpoint: Path, recipe: dict) -> Path:
    with atomic_dir(path) as tmp:
        write_json(tmp / "results.json", results)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
        plot_confusion(results["confusion_matrix"], results["labels"], tmp / "confusion.png")
        stats = {
            "accuracy": results["accuracy"],
            "macro_f1": results["macro_f1"],
            "best_epoch": results["best_epoch"],
        }
        write_manifest(tmp, "report", recipe=recipe, inputs=[checkpoint], stats=stats)
    return path


def plot_confusion(matrix: list[list[int]], labels: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in matrix) or 1
    for t, row in enumerate(matrix):
        for p, count in enumerate(row):
            ax.text(
                p, t, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
            )
    ax.set_title("validation confusion matrix")
    fig.tight_layout()
    fig.savefig(
        png, dpi=100, metadata={"Software": None}
    )  # no version/date: the same results, the same bytes
    plt.close(fig)


def summary_rows(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "val accuracy": results["accuracy"],
        "val macro-F1": results["macro_f1"],
        "untrained accuracy": results["untrained"]["accuracy"],
        "best epoch": results["best_epoch"],
        "val rows": results["rows"],
        "labels": ", ".join(results["labels"]),
        "checkpoint": results["checkpoint"],
        "report": results["report"],
    }
