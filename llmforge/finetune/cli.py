"""`llmforge finetune`: a group of fine-tuning commands (no torch import at module load).

Today `classify` (an encoder with a sequence-classification head); instruction tuning (#15) adds its
commands beside it."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import emit_json, info, summary_table

app = typer.Typer(
    help="Fine-tune a pretrained checkpoint: sequence classification with an encoder.", no_args_is_help=True
)

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
            f"{recipe}: finetune.task = {loaded.finetune.task!r}; `finetune classify` needs 'classification'"
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
