"""`llmforge tokenize`: train, compare and apply tokenizers; pack token shards for training."""

from __future__ import annotations

from pathlib import Path

import typer

from llmforge.console import emit_json, human_bytes, info, summary_table

app = typer.Typer(
    help="Train tokenizers (HF tokenizers), compare them, encode datasets into token shards.",
    no_args_is_help=True,
)

SET_HELP = "Override a recipe key, e.g. --set tokenizer.vocab_size=4096 (repeatable)."


def _recipe(recipe_file: Path, overrides: list[str]):
    from llmforge.recipe import load_recipe

    recipe = load_recipe(recipe_file, overrides)
    return recipe, recipe.table("tokenizer")


@app.command("train")
def train(
    recipe_file: Path = typer.Argument(..., metavar="RECIPE", help="Recipe TOML with a \\[tokenizer] table."),
    data: Path | None = typer.Option(None, "--data", help="Dataset artifact (default: runs/<name>/dataset)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON on stdout."),
) -> None:
    """Train a tokenizer on a sample of the dataset; write runs/<name>/tokenizer (loads with AutoTokenizer).

    Example: llmforge tokenize train recipes/tiny.toml --set tokenizer.vocab_size=4096
    """
    from llmforge.artifacts import DATASET_DIR, TOKENIZER_DIR
    from llmforge.tokenizer.train import train_tokenizer

    recipe, cfg = _recipe(recipe_file, set_)
    out = recipe.run_dir / TOKENIZER_DIR
    report = train_tokenizer(
        cfg, data or recipe.run_dir / DATASET_DIR, out, recipe=cfg.model_dump(mode="json")
    )
    if as_json:
        emit_json({"path": str(out), **report})
        return
    summary_table(
        f"tokenize train → {out}",
        {
            "algorithm": report["algorithm"],
            "vocab size": report["vocab_size"],
            "sample": f"{human_bytes(report['sample_bytes'])} in {report['sample_documents']:,} documents",
            "time": f"{report['seconds']:.2f} s",
            "speed": f"{report['train_mb_per_s']} MB/s",
        },
    )
    info(f"[green]wrote[/] {out}")


@app.command("encode")
def encode(
    recipe_file: Path = typer.Argument(..., metavar="RECIPE", help="Recipe TOML with a \\[tokenizer] table."),
    data: Path | None = typer.Option(None, "--data", help="Dataset artifact (default: runs/<name>/dataset)."),
    tokenizer: Path | None = typer.Option(
        None, "--tokenizer", help="Tokenizer artifact (default: runs/<name>/tokenizer)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Worker processes at most (overrides tokenizer.workers); started only when each gets 32 MB "
        "of text or more, below that one process encodes on every core.",
    ),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the encoding report as JSON on stdout."),
) -> None:
    """Encode the dataset into runs/<name>/tokens (flat uint16/uint32 shards + index.json, EOS after every
    document, train/val split by a hash of the origin document, so up-sampled and counterfactual copies of
    a document share its split). Re-running after a crash keeps finished shards.

    Example: llmforge tokenize encode recipes/tiny.toml --workers 2
    """
    from llmforge.artifacts import DATASET_DIR, TOKENIZER_DIR, TOKENS_DIR
    from llmforge.tokenizer.encode import encode_dataset

    overrides = list(set_) + ([f"tokenizer.workers={workers}"] if workers is not None else [])
    recipe, cfg = _recipe(recipe_file, overrides)
    out = recipe.run_dir / TOKENS_DIR
    report = encode_dataset(
        data or recipe.run_dir / DATASET_DIR,
        tokenizer or recipe.run_dir / TOKENIZER_DIR,
        out,
        val_fraction=cfg.val_fraction,
        workers=cfg.workers,
        recipe=cfg.model_dump(mode="json"),
    )
    if as_json:
        emit_json({"path": str(out), **report})
        return
    rows = [
        (name, f"{c['train_tokens']:,}", f"{c['val_tokens']:,}", f"{c['documents']:,}")
        for name, c in report["sources"].items()
    ]
    rows.append(
        (
            "total",
            f"{report['tokens']['train']:,}",
            f"{report['tokens']['val']:,}",
            f"{report['documents']['train'] + report['documents']['val']:,}",
        )
    )
    summary_table(f"tokenize encode → {out}", rows, ("source", "train tokens", "val tokens", "documents"))
    speed = f"{report['encode_mb_per_s']} MB/s" if report["encode_mb_per_s"] else "all shards resumed"
    info(
        f"[green]wrote[/] {out} ({report['dtype']}, {report['bytes_per_token']} bytes/token, "
        f"{report['seconds']:.2f} s, {speed}, {report['processes']} process(es), "
        f"{report['resumed_units']} shard(s) resumed)"
    )


@app.command("compare")
def compare(
    tokenizers: list[Path] = typer.Argument(..., metavar="TOKENIZER...", help="Tokenizer directories."),
    data: Path = typer.Option(..., "--data", help="Dataset artifact to measure on (its val split)."),
    max_bytes: int = typer.Option(5_000_000, "--max-bytes", min=1, help="Held-out text to use, in bytes."),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        min=0,
        max=0.99,
        help="Held-out share to measure on (default: the split of the tokens artifact beside --data, else "
        "the one the first tokenizer was trained with).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON on stdout."),
    png: Path | None = typer.Option(None, "--png", help="Also draw the metrics as a bar chart (PNG)."),
) -> None:
    """Bytes/token, fertility, vocabulary utilisation, unk rate and long-token share on held-out text.

    Any local Hugging Face tokenizer directory (with tokenizer.json) can be compared with ours.

    Example: llmforge tokenize compare runs/tiny/tokenizer runs/big/tokenizer --data runs/tiny/dataset --png cmp.png
    """
    from llmforge.tokenizer.compare import compare_tokenizers, plot_comparison, sample_label

    result = compare_tokenizers(tokenizers, data, max_bytes, val_fraction)
    if png is not None:
        plot_comparison(result, png)
    if as_json:
        emit_json(result)
        return
    rows = [
        (
            r["tokenizer"],
            f"{r['vocab_size']:,}",
            f"{r['bytes_per_token']:.3f}",
            f"{r['fertility']:.3f}" if r["fertility"] is not None else "-",
            f"{r['vocab_utilisation']:.1%}",
            f"{r['unk_rate']:.2%}",
            f"{r['long_token_share']:.1%}",
        )
        for r in result["tokenizers"]
    ]
    summary_table(
        f"tokenize compare on {result['documents']:,} {sample_label(result)} documents of {data} "
        f"(val_fraction {result['val_fraction']}: {result['val_fraction_from']})",
        rows,
        (
            "tokenizer",
            "vocab",
            "bytes/token",
            "tokens/word",
            "vocab used",
            "unk",
            f"≥{result['long_token_bytes']} B",
        ),
    )
    if png is not None:
        info(f"[green]wrote[/] {png}")
