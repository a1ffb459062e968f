"""`llmforge card RUN_DIR` (a model card for one checkpoint) and `llmforge report RUN_DIR` (the run's report card),
both written from the run directory's own manifests and reports, without torch."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import typer

from llmforge.console import UserError, emit_json, info, print_result, summary_table, warn

LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")  # as [card] license (card/config.py)
JSON_HELP = "Print what was written as JSON on stdout (nothing else goes to stdout)."
WATTS_HELP = "Average power per GPU in watts for the CO2 estimate (default: the GPU's datasheet board power)."
PUE_HELP = "Data-centre power usage effectiveness for the CO2 estimate (1.0: the GPUs' own draw only)."
GRID_HELP = (
    "Grid carbon intensity in g CO2eq/kWh for the CO2 estimate (default 475, the 2019 world average, IEA)."
)


def card(
    run_dir: Path = typer.Argument(..., help="Run directory (runs/<name>)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the card (default: RUN_DIR/MODEL_CARD.md)."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="The checkpoint the card is for, as a path or relative to RUN_DIR (default: the last stage's final "
        "checkpoint: RLHF policy, else fine-tune, else pretraining's last step).",
    ),
    license_: str | None = typer.Option(
        None,
        "--license",
        help="License id for the metadata (default: the recipe's card.license, else other + TODO).",
    ),
    gpu_watts: float | None = typer.Option(None, "--gpu-watts", min=1, help=WATTS_HELP),
    pue: float = typer.Option(1.0, "--pue", min=1.0, help=PUE_HELP),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity", min=0, help=GRID_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write a model card (Mitchell et al. 2019) for a checkpoint of a run: Hugging Face metadata with a
    model-index from its lm-eval results, and the data, tokenizer, architecture, compute, eval and bias numbers
    the run recorded. Sections only a person can write are marked TODO.

    Example: llmforge card runs/tiny --out runs/tiny/MODEL_CARD.md
    """
    from llmforge.artifacts import ensure_writable
    from llmforge.card.model_card import CardOptions, gather, render
    from llmforge.card.run import Run, check_run_dir

    root = check_run_dir(run_dir)
    out = ensure_writable(out or root / "MODEL_CARD.md", directory=False)
    if (out.parent / "manifest.json").is_file():
        raise UserError(
            f"--out {out}: inside an artifact (its content hash would no longer match); write it elsewhere"
        )
    if license_ is not None and not LICENSE_ID.fullmatch(license_):
        raise UserError(
            f"--license {license_!r}: expected a license id such as apache-2.0, mit, cc-by-4.0 or other"
        )
    info(f"reading {root}")
    run = Run.load(root)
    ckpt = run.checkpoint(checkpoint)
    if ckpt is None:
        raise UserError(
            f"{run_dir}: no checkpoint in this run (checkpoints/step-*, finetune/, rlhf/); nothing to card"
        )
    info(f"model card for {ckpt.rel}")
    facts = gather(run, ckpt, CardOptions(license_, gpu_watts, pue, grid_intensity))
    _say_unused_co2_flags(facts.emissions, gpu_watts, pue, grid_intensity)
    text = render(facts)
    _write_text(out, text)
    loaded = _check_card(out, facts)
    doc = {"path": str(out.resolve()), **facts.to_dict(), "eval_results": loaded}
    if as_json:
        emit_json(doc)
    summary_table(
        "llmforge card",
        {
            "checkpoint": ckpt.rel,
            "stage": facts.stage,
            "parameters": facts.arch["parameters"],
            "model-index results": loaded,
            "license": facts.license + (" (TODO)" if facts.license_todo else ""),
            "co2_eq_emissions": "omitted" if facts.emissions is None else f"{facts.emissions.grams:.3g} g",
        },
    )
    if not as_json:
        print_result(str(out.resolve()))


def _write_text(path: Path, text: str) -> None:
    """Write a file atomically (temporary sibling, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _say_unused_co2_flags(estimate, gpu_watts, pue, grid_intensity) -> None:
    if estimate is None and (gpu_watts is not None or pue != 1.0 or grid_intensity is not None):
        warn("--gpu-watts/--pue/--grid-intensity: unused, the run records no GPU-hours to estimate CO2 from")


def _check_card(path: Path, facts: object) -> int:
    """Load the card back with huggingface_hub (metadata parsed as ModelCardData, model-index into
    eval_results); a card it cannot read is our bug, not the user's. Returns the number of eval results."""
    from huggingface_hub import ModelCard

    loaded = ModelCard.load(path)
    results = loaded.data.eval_results or []
    expected = len(facts.evals)  # type: ignore[attr-defined]
    if len(results) != expected:
        raise RuntimeError(f"{path}: the model-index holds {len(results)} results, expected {expected}")
    return len(results)


def _refuse_to_replace(out: Path, root: Path) -> None:
    """The report card replaces its folder whole: refuse one that holds anything but an earlier report card
    (another artifact, other files, the run itself)."""
    from llmforge.artifacts import MANIFEST
    from llmforge.card.run import read_json

    resolved = out.resolve()
    if resolved == root or resolved in root.parents:
        raise UserError(f"--out {out}: is the run directory or holds it; give a folder for the report card")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = read_json(out / MANIFEST) or {}
    if manifest.get("kind") != "report" or "report" not in (manifest.get("recipe") or {}):
        raise UserError(
            f"--out {out}: the folder holds other files (not an earlier report card); it would be replaced whole"
        )


def report(
    run_dir: Path = typer.Argument(..., help="Run directory (runs/<name>)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Report directory (default: RUN_DIR/reports/card)."
    ),
    gpu_watts: float | None = typer.Option(None, "--gpu-watts", min=1, help=WATTS_HELP),
    pue: float = typer.Option(1.0, "--pue", min=1.0, help=PUE_HELP),
    grid_intensity: float | None = typer.Option(None, "--grid-intensity", min=0, help=GRID_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write a run's report card: one page (report.md) with every stage's numbers — data funnel, tokenizer
    compression, loss curves, eval and bias tables, cost — and copies of the stages' plots, as a report artifact.
    Stages the run does not have are listed as not run.

    Example: llmforge report runs/tiny --out runs/tiny/reports/card
    """
    from llmforge.artifacts import ensure_writable
    from llmforge.card import report_card
    from llmforge.card.model_card import CardOptions
    from llmforge.card.run import Run, check_run_dir

    root = check_run_dir(run_dir)
    out = ensure_writable(out or root / "reports" / "card", directory=True)
    _refuse_to_replace(out, root)
    info(f"reading {root}")
    run = Run.load(root)
    opts = CardOptions(None, gpu_watts, pue, grid_intensity)
    facts = report_card.gather(run, opts)
    written = report_card.write(
        run, out, facts, {"gpu_watts": gpu_watts, "pue": pue, "grid_intensity": grid_intensity}
    )
    if as_json:
        emit_json({"path": str(written.resolve()), **facts})
    summary_table(
        "llmforge report",
        [(s["stage"], "done" if s["present"] else "not run", s["headline"] or "") for s in facts["stages"]],
        columns=("stage", "status", "numbers"),
    )
    if not as_json:
        print_result(str(written.resolve()))
