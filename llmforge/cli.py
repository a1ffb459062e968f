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
from llmforge.console import (
    UserError,
    configure,
    emit_json,
    error_boundary,
    info,
    print_result,
    summary_table,
)

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
        False, "--quiet", "-q", help="No progress bars or log lines (results and errors still print)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool | None = typer.Option(  # noqa: UP007 - typer needs Optional on 3.10
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """llmforge: one toolkit for the whole life of a language model you train yourself.

    --quiet and --debug may also be given after the subcommand (`llmforge data build r.toml --quiet`).
    """
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
    """Print the resolved recipe on stdout: as TOML, a recipe file that runs the same wherever it is
    saved (overrides applied, paths made absolute); with --json, every key with its default filled in.

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
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Also rehash every file against the manifest, check every token id (reads the whole artifact).",
    ),
) -> None:
    """Show an artifact's kind, inputs, statistics and lineage, and check it against its contract
    (files present at their recorded sizes, the kind's layout; with --verify, every file's hash and id).

    Example: llmforge inspect runs/tiny/tokens --verify
    """
    from llmforge.artifacts import lineage, read_manifest
    from llmforge.artifacts.checks import check_artifact

    manifest = read_manifest(path)
    problem = check_artifact(path, manifest, verify=verify)
    tree = lineage(path)
    if as_json:  # the JSON document says why it is invalid; the exit code is 2 all the same
        emit_json({**manifest, "lineage": tree, "valid": problem is None, "problem": problem})
    if problem:
        raise UserError(f"{path}: {problem}")
    if not as_json:
        _print_inspect(path, manifest, tree)


def _print_inspect(path: Path, manifest: dict, tree: dict) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    rows = {
        "kind": manifest["kind"],
        "created": manifest["created_at"],
        "llmforge": manifest["llmforge_version"],
        "content hash": manifest.get("content_hash") or "-",
        "git commit": (manifest.get("environment", {}).get("git_commit") or "-")[:12],
        "valid": "yes",
    }
    rows.update(
        {f"stats.{k}": v for k, v in manifest.get("stats", {}).items() if not isinstance(v, (dict, list))}
    )
    summary_table(f"{path}", rows)

    def add(node: Tree, item: dict) -> None:
        for child in item.get("inputs", []):
            add(node.add(f"{child.get('kind', '?')}  {escape(child['path'])}"), child)

    root = Tree(f"[bold]{tree.get('kind')}[/]  {escape(tree['path'])}")
    add(root, tree)
    print_result("lineage:")
    print_result(root, full_width=True)


# ------------------------------------------------------------------------------------------- stages
# One sub-app per stage that exists, in pipeline order. Each stage's cli.py stays light to import.

from llmforge.bias.cli import app as bias_app  # noqa: E402
from llmforge.data.cli import app as data_app  # noqa: E402
from llmforge.eval.cli import app as eval_app  # noqa: E402
from llmforge.finetune.cli import app as finetune_app  # noqa: E402
from llmforge.plan.cli import app as plan_app  # noqa: E402
from llmforge.pretrain.cli import app as pretrain_app  # noqa: E402
from llmforge.rlhf.cli import app as rlhf_app  # noqa: E402
from llmforge.tokenizer.cli import app as tokenize_app  # noqa: E402

for _name, _stage in (
    ("plan", plan_app),
    ("data", data_app),
    ("tokenize", tokenize_app),
    ("pretrain", pretrain_app),
    ("eval", eval_app),
    ("finetune", finetune_app),
    ("rlhf", rlhf_app),
    ("bias", bias_app),
):
    app.add_typer(_stage, name=_name)

from llmforge.pretrain import cli as pretrain_cli  # noqa: E402

app.command("export")(pretrain_cli.export)

from llmforge.generation import cli as generation_cli  # noqa: E402

app.command("generate")(generation_cli.generate)
app.command("chat")(generation_cli.chat)

from llmforge.card import cli as card_cli  # noqa: E402

app.command("card")(card_cli.card)
app.command("report")(card_cli.report)

from llmforge.serve import cli as serve_cli  # noqa: E402

app.command("serve")(serve_cli.serve)
app.command("review")(serve_cli.review)

from llmforge.sweep import cli as sweep_cli  # noqa: E402

app.command("sweep")(sweep_cli.sweep)
app.command("ablate")(sweep_cli.ablate)


def root_options_first(command: typer.core.TyperGroup, argv: list[str]) -> list[str]:
    """Move the root's flags (--quiet, -q, --debug) that follow the subcommand to the front, so
    `llmforge data build r.toml --quiet` means `llmforge --quiet data build r.toml`. Nothing after `--` moves."""
    flags = {
        name
        for param in command.params
        if getattr(param, "is_flag", False) and not getattr(param, "is_eager", False)
        for name in param.opts
    }
    end = argv.index("--") if "--" in argv else len(argv)
    moved = [a for a in argv[:end] if a in flags]
    kept = [a for a in argv[:end] if a not in flags]
    return [*moved, *kept, *argv[end:]]


def _usage_error_line(error: Exception) -> str:
    """A click usage error (unknown option, missing argument) as one line with where to look for help."""
    ctx = getattr(error, "ctx", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    return f"{error.format_message().rstrip('.')}{where}"  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI inside the error boundary (exit 0/1/2)."""
    try:  # recent typer vendors click
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exceptions
    command = typer.main.get_command(app)
    argv = root_options_first(command, list(sys.argv[1:] if argv is None else argv))
    configure(json_output="--json" in argv[: argv.index("--") if "--" in argv else len(argv)])
    with error_boundary():
        try:
            rc = command.main(args=argv, prog_name="llmforge", standalone_mode=False)
        except typer.Exit as e:
            rc = e.exit_code
        except typer.Abort:
            raise KeyboardInterrupt from None
        except click_exceptions.ClickException as e:
            if not e.format_message():  # no_args_is_help: the help was printed, it is the whole answer
                raise SystemExit(2) from None
            raise UserError(_usage_error_line(e)) from None
        raise SystemExit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
