"""The `llmforge` command: one typer sub-app per stage, plus `recipe` and `inspect`.

Start-up stays light: this module and every stage's `cli.py` import only typer, rich, pydantic and the
stage's config; heavy libraries (torch, transformers, datasets, datatrove) are imported inside the
commands that need them, so `llmforge --help` and `llmforge plan …` answer without loading torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from llmforge import __version__
from llmforge.console import UserError, configure, emit_json, error_boundary, info, summary_table

app = typer.Typer(
    name="llmforge",
    help="Size, build data for, tokenize, pretrain and evaluate your own language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"llmforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars or tables (errors still print)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool | None = typer.Option(  # noqa: UP007 - typer needs Optional on 3.10
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """llmforge: one toolkit for the whole life of a language model you train yourself."""
    configure(quiet=quiet, debug=debug)


# ------------------------------------------------------------------------------------------- recipe

recipe_app = typer.Typer(help="Validate and show recipes (TOML files in recipes/).", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

SET_HELP = "Override a recipe key, e.g. --set train.lr=3e-4 (repeatable)."


@recipe_app.command("check")
def recipe_check(
    file: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Validate a recipe: exit 0 when valid, 2 with the file, key and expected value when not.

    Example: llmforge recipe check recipes/tiny.toml --set train.lr=1e-3
    """
    from llmforge.recipe import load_recipe

    recipe = load_recipe(file, set_)
    tables = [name for name in type(recipe).model_fields if getattr(recipe, name) is not None]
    info(f"[green]ok[/] {file}: tables {', '.join(tables)}")


@recipe_app.command("show")
def recipe_show(
    file: Path = typer.Argument(..., help="Recipe TOML file."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of TOML."),
) -> None:
    """Print the resolved recipe (defaults filled in, overrides applied) as TOML or JSON on stdout.

    Example: llmforge recipe show recipes/tiny.toml --set train.max_steps=10
    """
    from llmforge.recipe import load_recipe

    recipe = load_recipe(file, set_)
    if as_json:
        emit_json(recipe.to_dict())
    else:
        sys.stdout.write(recipe.to_toml())


# ------------------------------------------------------------------------------------------ inspect


@app.command("inspect")
def inspect_artifact(
    path: Path = typer.Argument(
        ..., help="An artifact directory (dataset, tokenizer, tokens, checkpoint, report)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest and lineage as JSON."),
) -> None:
    """Show an artifact's kind, inputs, statistics and lineage, and check it against its contract.

    Example: llmforge inspect runs/tiny/tokens
    """
    from llmforge.artifacts import lineage, read_manifest
    from llmforge.artifacts.checks import check_artifact

    manifest = read_manifest(path)
    problem = check_artifact(path, manifest)
    tree = lineage(path)
    if as_json:
        emit_json({**manifest, "lineage": tree, "valid": problem is None, "problem": problem})
    else:
        _print_inspect(path, manifest, tree, problem)
    if problem:
        raise UserError(f"{path}: {problem}")


def _print_inspect(path: Path, manifest: dict, tree: dict, problem: str | None) -> None:
    from rich.tree import Tree

    from llmforge.console import console

    rows = {
        "kind": manifest["kind"],
        "created": manifest["created_at"],
        "llmforge": manifest["llmforge_version"],
        "content hash": (manifest.get("content_hash") or "-")[:23],
        "git commit": (manifest.get("environment", {}).get("git_commit") or "-")[:12],
        "valid": "yes" if problem is None else f"NO: {problem}",
    }
    rows.update(
        {f"stats.{k}": v for k, v in manifest.get("stats", {}).items() if not isinstance(v, (dict, list))}
    )
    summary_table(f"{path}", rows)

    def add(node: Tree, item: dict) -> None:
        for child in item.get("inputs", []):
            add(node.add(f"{child.get('kind', '?')}  {child['path']}"), child)

    root = Tree(f"[bold]{tree.get('kind')}[/]  {tree['path']}")
    add(root, tree)
    info("lineage:")
    console.print(root)


# ------------------------------------------------------------------------------------------- stages
# One sub-app per stage that exists, in pipeline order. Each stage's cli.py stays light to import.

from llmforge.data.cli import app as data_app  # noqa: E402
from llmforge.eval.cli import app as eval_app  # noqa: E402
from llmforge.plan.cli import app as plan_app  # noqa: E402
from llmforge.pretrain.cli import app as pretrain_app  # noqa: E402
from llmforge.tokenizer.cli import app as tokenize_app  # noqa: E402

for _name, _stage in (
    ("plan", plan_app),
    ("data", data_app),
    ("tokenize", tokenize_app),
    ("pretrain", pretrain_app),
    ("eval", eval_app),
):
    app.add_typer(_stage, name=_name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI inside the error boundary (exit 0/1/2)."""
    try:  # recent typer vendors click
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exceptions
    command = typer.main.get_command(app)
    with error_boundary():
        try:
            rc = command.main(args=argv, prog_name="llmforge", standalone_mode=False)
        except typer.Exit as e:
            rc = e.exit_code
        except typer.Abort:
            raise KeyboardInterrupt from None
        except click_exceptions.ClickException as e:
            e.show()
            rc = 2
        raise SystemExit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
