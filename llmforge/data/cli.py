"""`llmforge data`: build a dataset from a recipe's `[data]` table, then look at it."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import UserError, emit_json, human_bytes, info, state, summary_table

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
        info(str(e))
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
        )
        for s in report["steps"]
    ]
    summary_table(
        f"data build → {out}", rows, ("step", "docs in", "docs out", "bytes in", "bytes out", "dropped")
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


@app.command("stats")
def stats(
    dataset: Path = typer.Argument(..., help="A dataset artifact directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Documents and bytes by source, length percentiles, and what each build step removed.

    Example: llmforge data stats runs/tiny/dataset
    """
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

    from llmforge.console import console
    from llmforge.data.inspect import sample_documents

    docs = sample_documents(dataset, n, seed, source)
    if not docs:
        raise UserError(f"{dataset}: no documents" + (f" from source {source!r}" if source else ""))
    if as_json:
        emit_json(docs)
        return
    for doc in docs:
        text = doc["text"] if len(doc["text"]) <= chars else doc["text"][:chars] + " …"
        console.print(Panel(escape(text), title=f"{doc['source']} · {doc['id']}", title_align="left"))
