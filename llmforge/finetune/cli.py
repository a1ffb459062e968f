"""`llmforge finetune`: a group of fine-tuning commands (no torch import at module load): `sft` (instruction
tuning of a causal LM with trl, full or LoRA/QLoRA), `merge` (a LoRA adapter folded into its base), `classify`
(an encoder with a sequence-classification head) and the example-data builders."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import emit_json, info, summary_table

app = typer.Typer(
    help="Fine-tune a pretrained checkpoint: instruction tuning (full, LoRA, QLoRA) of a causal LM, or "
    "sequence classification with an encoder.",
    no_args_is_help=True,
)

SFT_EXAMPLE = """
Example (the demo model of recipes/tiny.toml on docstring → function-body pairs of its own corpus):

  llmforge finetune sft recipes/tiny.toml --set finetune.max_steps=20

  llmforge finetune sft recipes/tiny.toml --set finetune.method=lora --set finetune.out=runs/tiny/finetune-lora

  llmforge finetune merge runs/tiny/finetune-lora/checkpoint
"""


@app.command("sft", epilog=SFT_EXAMPLE)
def sft(
    recipe: Path = typer.Argument(..., help='Recipe TOML with a \\[finetune] table (task = "instruction").'),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set finetune.lr=3e-4."),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start over: delete finetune.out's checkpoints and result first."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Instruction-tune a causal LM (a pretrain checkpoint or a local HF model dir) with trl's SFTTrainer on
    prompt/completion, Alpaca, chat-messages or field-mapped jsonl/parquet rows; writes <out>/checkpoint (a
    full model or a LoRA adapter) and <out>/report (results.json, metrics.jsonl, loss.png). An interrupted
    run (SIGTERM, Ctrl-C) checkpoints; running the same command resumes it.

    Example: llmforge finetune sft recipes/tiny.toml --set finetune.max_steps=20
    """
    from llmforge.finetune.sft import run_sft
    from llmforge.finetune.sft_report import summary_rows
    from llmforge.recipe import load_recipe

    outcome = run_sft(load_recipe(recipe, set_), fresh=fresh)
    if outcome.interrupted:
        raise typer.Exit(128 + outcome.interrupted)
    if as_json:
        emit_json(outcome.results)
    else:
        summary_table("finetune sft", summary_rows(outcome.results))


@app.command("merge")
def merge(
    adapter: Path = typer.Argument(..., help="A LoRA checkpoint written by `finetune sft` (method = lora)."),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the merged model (default: ADAPTER-merged)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Fold a LoRA adapter into its base model and write a full checkpoint (loads without peft); the merged
    logits are checked against base + adapter.

    Example: llmforge finetune merge runs/tiny/finetune-lora/checkpoint
    """
    from llmforge.finetune.merge import merge_adapter

    results = merge_adapter(adapter, out or adapter.with_name(adapter.name + "-merged"))
    if as_json:
        emit_json(results)
    else:
        summary_table("finetune merge", results)


EXAMPLE = """
Example (the tiny BERT of recipes/bert-tiny-mlm.toml on WikiText-2 vs Tiny Shakespeare sentences):

  llmforge finetune make-example-data --shared ../shared/data --out runs/classify-data

  llmforge finetune classify recipes/bert-tiny-classify.toml
"""


@app.command("classify", epilog=EXAMPLE)
def classify(
    recipe: Path = typer.Argument(
        ..., help='Recipe TOML with a \\[finetune] table (task = "classification").'
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set finetune.epochs=5."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Fine-tune an encoder checkpoint for sequence classification on jsonl rows of text and label; writes
    the best epoch's model as a checkpoint artifact (<out>/checkpoint) and a report artifact (<out>/report:
    results.json, metrics.jsonl, confusion.png).

    Example: llmforge finetune classify recipes/bert-tiny-classify.toml --set finetune.epochs=1
    """
    from llmforge.finetune.classify import run_classification
    from llmforge.finetune.report import summary_rows
    from llmforge.recipe import load_recipe

    loaded = load_recipe(recipe, set_)
    if loaded.table("finetune").task != "classification":
        from llmforge.console import UserError

        raise UserError(
            f"{recipe}: finetune.task = {loaded.finetune.task!r}; `finetune classify` needs 'classification' "
            "(instruction tuning is `finetune sft`)"
        )
    results = run_classification(loaded)
    if as_json:
        emit_json(results)
    else:
        summary_table("finetune classify", summary_rows(results))


@app.command("make-example-data")
def make_example_data(
    shared: Path = typer.Option(
        ..., "--shared", help="The shared data folder (holds wikitext2/ and tinyshakespeare/)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write train.jsonl and val.jsonl into."),
    per_class: int = typer.Option(1000, "--per-class", min=1, help="Train rows per class."),
    val_per_class: int = typer.Option(200, "--val-per-class", min=1, help="Validation rows per class."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the sentence sample and order."),
) -> None:
    """Build the example data of recipes/bert-tiny-classify.toml: WikiText-2 sentences (label "wiki") and
    Tiny Shakespeare sentences (label "shakespeare"), balanced, as train.jsonl and val.jsonl.

    Example: llmforge finetune make-example-data --shared ../shared/data --out runs/classify-data
    """
    from llmforge.finetune.example_data import make_example_data as build

    counts = build(shared, out, per_class, val_per_class, seed)
    info(f"[green]wrote[/] {out}")
    summary_table(str(out), counts)


@app.command("make-docstring-pairs")
def make_docstring_pairs(
    dataset: Path = typer.Option(
        ..., "--dataset", help="A dataset artifact of Python source (runs/tiny/dataset)."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the instructions artifact."),
    tokens: Path | None = typer.Option(
        None, "--tokens", help="The tokens artifact pretraining used: its val documents give the val pairs."
    ),
    max_body_lines: int = typer.Option(
        12, "--max-body-lines", min=1, help="Longest function body taken, in lines."
    ),
    max_chars: int = typer.Option(
        700, "--max-chars", min=1, help="Longest prompt + completion taken, in characters."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the val documents when --tokens is not given."
    ),
) -> None:
    """Build docstring → function-body instruction pairs from a dataset of Python source: one pair per function
    or method with a docstring (prompt: the def line(s) and docstring; completion: the body), as an
    instructions artifact (train.jsonl, val.jsonl, report.json).

    Example: llmforge finetune make-docstring-pairs --dataset runs/tiny/dataset --tokens runs/tiny/tokens --out runs/tiny/instructions
    """
    from llmforge.finetune.docstring_pairs import build_docstring_pairs

    report = build_docstring_pairs(
        dataset, out, tokens=tokens, max_body_lines=max_body_lines, max_chars=max_chars, seed=seed
    )
    info(f"[green]wrote[/] {out}")
    skipped = {f"skipped: {reason}": n for reason, n in report["skipped"].items()}
    summary_table(
        str(out),
        {
            "documents": report["documents"],
            "unparsable": report["unparsable"],
            "functions with a docstring": report["with_docstring"],
            **skipped,
            "pairs": report["pairs"],
            "train pairs (documents)": f"{report['train']:,} ({report['train_documents']:,})",
            "val pairs (documents)": f"{report['val']:,} ({report['val_documents']:,})",
            "val split by": report["split"]["by"],
        },
    )
