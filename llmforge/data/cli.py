"""`llmforge data`: build a dataset from a recipe's `[data]` table, then look at it."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import UserError, emit_json, human_bytes, info, print_result, state, summary_table

app = typer.Typer(
    help="Build a clean, deduplicated, decontaminated, weighted dataset (datatrove).", no_args_is_help=True
)

SET_HELP = "Override a recipe key, e.g. --set data.workers=2 (repeatable)."


@app.command("build")
def build(
    recipe_file: Path = typer.Argument(..., metavar="RECIPE", help="Recipe TOML with a \\[data] table."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (overrides data.workers)."),
    executor: str | None = typer.Option(
        None, "--executor", help="local | slurm | ray (overrides data.executor)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the build report as JSON on stdout."),
) -> None:
    """Read the sources, run the steps, write runs/<name>/dataset (shards, report.json, funnel.png).

    Re-running after a crash resumes the datatrove tasks that had finished.

    Example: llmforge data build recipes/tiny.toml --workers 2
    """
    from rich.markup import escape

    from llmforge.data.build import build_dataset
    from llmforge.data.pipeline import SlurmSubmitted
    from llmforge.recipe import load_recipe

    overrides = list(set_)
    if workers is not None:
        overrides.append(f"data.workers={workers}")
    if executor is not None:
        overrides.append(f'data.executor="{executor}"')
    recipe = load_recipe(recipe_file, overrides)
    cfg = recipe.table("data")
    try:
        report = build_dataset(cfg, recipe.run_dir, recipe.run.seed, verbose=state.debug)
    except SlurmSubmitted as e:
        print_result(escape(str(e)))
        return
    out = recipe.run_dir / "dataset"
    if as_json:
        emit_json({"path": str(out), **report})
        return
    rows = [
        (
            s["step"],
            s["docs_in"],
            s["docs_out"],
            human_bytes(s["bytes_in"]),
            human_bytes(s["bytes_out"]),
            ", ".join(f"{k} {v:,}" for k, v in s["dropped"].items()) or "-",
            f"{s['docs_per_s']:,.0f}" if s["docs_per_s"] else "-",
        )
        for s in report["steps"]
    ]
    summary_table(
        f"data build → {out}",
        rows,
        ("step", "docs in", "docs out", "bytes in", "bytes out", "dropped", "docs/s"),
    )
    summary_table(
        "sources",
        [
            (n, s["docs_in"], s["docs_out"], human_bytes(s["bytes_out"]), report["mixture_bytes_fraction"][n])
            for n, s in report["sources"].items()
        ],
        ("source", "docs in", "docs out", "bytes out", "mixture"),
    )
    info(
        f"[green]wrote[/] {out} ({report['docs_out']:,} docs, {human_bytes(report['bytes_out'])}) "
        f"in {report['seconds']:.1f} s"
    )


@app.command("train-classifier")
def train_classifier(
    positive: Path | None = typer.Option(
        None,
        "--positive",
        help="Reference-quality text: a dataset artifact, .jsonl(.gz)/text file or folder.",
    ),
    negative: Path | None = typer.Option(
        None, "--negative", help="Raw text (e.g. unfiltered crawl), same formats."
    ),
    labelled: Path | None = typer.Option(
        None,
        "--labelled",
        help="Instead of --positive/--negative: a .csv (with a header) or .jsonl(.gz) of labelled rows.",
    ),
    label_key: str = typer.Option("label", "--label-key", help="Label column/field of --labelled rows."),
    positive_labels: str | None = typer.Option(
        None, "--positive-labels", help="With --labelled: the labels that count as positive, e.g. 0,1."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the classifier artifact."),
    text_key: str = typer.Option(
        "text", "--text-key", help="Text field of .jsonl records / column of a .csv."
    ),
    holdout: float = typer.Option(0.1, "--holdout", min=0.01, max=0.5, help="Held-out fraction per class."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="fastText training epochs."),
    max_docs: int = typer.Option(100_000, "--max-docs", min=2, help="Seeded sample cap per class."),
    balance: bool = typer.Option(
        True, "--balance/--no-balance", help="With --labelled: repeat the smaller class's training rows."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling, split and training seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON on stdout."),
) -> None:
    """Train a fastText classifier and report its held-out precision/recall/accuracy.

    Quality (--positive/--negative): reference vs raw text, as GPT-3 and LLaMA did; use it with a
    `quality_classifier` step in \\[\\[data.steps]]. Text files give one document per blank-line-separated
    paragraph; texts under 5 words are skipped.

    Labelled (--labelled): rows whose --label-key is one of --positive-labels are positive, all others negative;
    each class is split, the held-out rows keep the file's balance, and the report adds balanced accuracy, macro
    F1, ROC AUC and the majority-class baseline. A toxicity classifier made so scores `llmforge bias` probes
    (bias.toxicity.scorer = "classifier:PATH").

    Example: llmforge data train-classifier --positive wiki.txt --negative crawl.jsonl.gz --out runs/clf

    Example: llmforge data train-classifier --labelled labeled_data.csv --text-key tweet --label-key class --positive-labels 0,1 --out runs/toxicity-clf
    """
    from llmforge.data.classifier import train_classifier as train
    from llmforge.data.classifier import train_classifier_labelled

    common = {"text_key": text_key, "holdout": holdout, "epochs": epochs, "max_docs": max_docs, "seed": seed}
    if labelled is not None:
        if positive is not None or negative is not None:
            raise UserError("give --labelled or --positive with --negative, not both")
        if not positive_labels:
            raise UserError("--labelled needs --positive-labels (e.g. --positive-labels 0,1)")
        report = train_classifier_labelled(
            labelled, out, positive_labels=positive_labels, label_key=label_key, balance=balance, **common
        )
    else:
        if positive is None or negative is None:
            raise UserError(
                "give --positive and --negative (texts), or --labelled FILE with --positive-labels"
            )
        report = train(positive, negative, out, **common)
    if as_json:
        emit_json({"path": str(out), **report})
        return
    h = report["heldout"]
    rows = {
        "train docs (positive / negative)": f"{report['positive']['train_docs']:,} / "
        f"{report['negative']['train_docs']:,}",
        "held-out docs (positive / negative)": f"{h['positives']:,} / {h['negatives']:,}",
        f"precision @ {h['threshold']}": h["precision"],
        "recall": h["recall"],
        "accuracy": h["accuracy"],
    }
    if labelled is not None:
        rows.update(
            {
                "F1 (positive)": h["f1"],
                "balanced accuracy": h["balanced_accuracy"],
                "macro F1": h["macro_f1"],
                "ROC AUC": h["roc_auc"],
                f"majority baseline ({h['majority_class']}): accuracy / macro F1": f"{h['majority_accuracy']} / "
                f"{h['majority_macro_f1']}",
            }
        )
    rows["seconds"] = report["seconds"]
    title = "labelled classifier" if labelled is not None else "quality classifier"
    summary_table(f"{title} → {out}", rows)


@app.command("stats")
def stats(
    dataset: Path = typer.Argument(..., help="A dataset artifact directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Documents and bytes by source, length percentiles, what each build step removed, with examples.

    Example: llmforge data stats runs/tiny/dataset
    """
    from rich.markup import escape

    from llmforge.console import results_console
    from llmforge.data.inspect import dataset_stats

    result = dataset_stats(dataset)
    if as_json:
        emit_json(result)
        return
    summary_table(
        f"{dataset}: {result['docs']:,} docs, {human_bytes(result['bytes'])}",
        [
            (
                s,
                v["docs"],
                human_bytes(v["bytes"]),
                v["chars_p10"],
                v["chars_p50"],
                v["chars_p90"],
                v["chars_max"],
            )
            for s, v in result["by_source"].items()
        ],
        ("source", "docs", "bytes", "chars p10", "p50", "p90", "max"),
    )
    if result["steps"]:
        summary_table(
            "build steps",
            [
                (
                    k,
                    v["docs_in"],
                    v["docs_out"],
                    ", ".join(f"{r} {n:,}" for r, n in v["dropped"].items()) or "-",
                )
                for k, v in result["steps"].items()
            ],
            ("step", "docs in", "docs out", "dropped"),
        )
        for step, v in result["steps"].items():
            matches = list(v.get("matches_per_eval_item", {}).items())
            if matches:
                summary_table(
                    f"{step}: documents matched per evaluation item (top 10 of {len(matches):,})",
                    matches[:10],
                    ("eval item", "documents"),
                )
        examples = [
            (step, reason, ex)
            for step, v in result["steps"].items()
            for reason, items in v["examples"].items()
            for ex in items
        ]
        if examples:
            print_result("[bold]removed documents (examples)[/]")
            for step, reason, ex in examples:
                text = escape(" ".join(ex["text"].split()))
                line = f"  {step} [yellow]{reason}[/] [cyan]{escape(ex['id'])}[/] ({ex['source']}): [dim]{text}[/]"
                results_console().print(line, no_wrap=True, overflow="ellipsis")


@app.command("sample")
def sample(
    dataset: Path = typer.Argument(..., help="A dataset artifact directory."),
    n: int = typer.Option(5, "-n", min=1, help="How many documents."),
    source: str | None = typer.Option(None, "--source", help="Only documents of this source."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    chars: int = typer.Option(600, "--chars", min=1, help="Show at most this many characters per document."),
    as_json: bool = typer.Option(False, "--json", help="Print the full documents as JSON on stdout."),
) -> None:
    """Print N random documents (seeded), optionally from one source.

    Example: llmforge data sample runs/tiny/dataset -n 5
    """
    from rich.markup import escape
    from rich.panel import Panel

    from llmforge.data.inspect import sample_documents

    docs = sample_documents(dataset, n, seed, source)
    if not docs:
        raise UserError(f"{dataset}: no documents" + (f" from source {source!r}" if source else ""))
    if as_json:
        emit_json(docs)
        return
    for doc in docs:
        text = doc["text"] if len(doc["text"]) <= chars else doc["text"][:chars] + " …"
        print_result(Panel(escape(text), title=f"{doc['source']} · {doc['id']}", title_align="left"))
