"""CLI conventions (DESIGN.md §4) across every command: `--help` with an example that parses against the
real CLI, light start-up (no torch & co. for help or `plan`), and `--json` meaning that stdout carries one
JSON document only. (tests/test_documented_commands.py runs the cheap examples.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import typer
from conftest import REPO, run_cli

import llmforge.cli

HEAVY = ("torch", "transformers", "datasets", "datatrove", "lm_eval")
EXAMPLE = re.compile(r"^[\s│]*(?:Examples?:\s*)?llmforge\s", re.MULTILINE)

# Runs commands inside one interpreter, then reports which heavy modules that imported.
IN_PROCESS = """
import contextlib, io, json, sys
from llmforge.cli import main

report_path, heavy, commands = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
runs = []
for args in commands:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(args)
            rc = 0
        except SystemExit as e:
            rc = e.code
    runs.append({"args": args, "rc": rc, "stdout": out.getvalue()})
imported = [m for m in heavy if m in sys.modules]
with open(report_path, "w") as f:
    json.dump({"runs": runs, "imported": imported}, f)
"""


def _command_paths() -> list[tuple[str, ...]]:
    def walk(cmd, path):
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(llmforge.cli.app), ()))


def _acts(path: tuple[str, ...]) -> bool:
    """A leaf command, or a group that does work itself (`plan`, `pretrain`) rather than only holding
    subcommands (those are covered through their subcommands)."""
    cmd = typer.main.get_command(llmforge.cli.app)
    for name in path:
        cmd = cmd.commands[name]
    return not hasattr(cmd, "commands") or cmd.invoke_without_command


COMMANDS = _command_paths()


def _in_process(tmp_path: Path, commands: list[list[str]], modules=HEAVY) -> dict:
    report = tmp_path / "in-process.json"
    r = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(report), ",".join(modules), json.dumps(commands)],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict:
    """`--help` of every command, all in one interpreter."""
    return _in_process(tmp_path_factory.mktemp("help"), [[*p, "--help"] for p in COMMANDS])


def test_the_tree_holds_every_stage():
    top = {p[0] for p in COMMANDS if p}
    assert {"plan", "data", "tokenize", "pretrain", "eval", "inspect", "recipe"} <= top
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "llmforge")
def test_help_exits_0_and_shows_an_example(helps, path):
    run = next(r for r in helps["runs"] if r["args"] == [*path, "--help"])
    assert run["rc"] == 0, run
    assert "Usage: llmforge" in run["stdout"]
    if _acts(path):
        assert EXAMPLE.search(run["stdout"]), (
            f"`llmforge {' '.join(path)} --help` shows no example:\n" + run["stdout"]
        )


def _examples(cmd) -> list[list[str]]:
    """The example command lines in a command's help text, as argv (without the leading `llmforge`),
    cut at a shell comment or operator."""
    text = "\n".join(filter(None, [cmd.help, cmd.epilog])).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if EXAMPLE.match(line):
            command = re.split(r"\s(?:#|&&|\|\|?|;|>>?|<)\s?", line.split("llmforge", 1)[1])[0]
            found.append(shlex.split(command))
    return found


def _parse_example(argv: list[str]) -> tuple[tuple[str, ...], str | None]:
    """(the command path an example addresses, the usage error it raises or None): subcommand names are
    followed down the tree, the rest is parsed by that command as the real CLI would."""
    cmd = typer.main.get_command(llmforge.cli.app)
    path: list[str] = []
    while argv and argv[0] in getattr(cmd, "commands", {}):
        cmd = cmd.commands[argv[0]]
        path.append(argv.pop(0))
    try:
        ctx = cmd.make_context(" ".join(["llmforge", *path]), list(argv))
        rest = [*getattr(ctx, "protected_args", []), *ctx.args]
        if hasattr(cmd, "commands") and rest:  # a group: the next word must name a subcommand
            cmd.resolve_command(ctx, rest)
    except Exception as e:  # noqa: BLE001 - click's UsageError family: unknown option, extra argument, ...
        return tuple(path), f"{type(e).__name__}: {e}"
    return tuple(path), None


@pytest.mark.parametrize("path", [p for p in COMMANDS if _acts(p)], ids=lambda p: " ".join(p) or "llmforge")
def test_help_examples_address_the_command_and_parse(path):
    """Each example in `--help` names this command (or another real one) and its options and arguments
    parse: a renamed option or a subcommand that does not exist fails here."""
    cmd = typer.main.get_command(llmforge.cli.app)
    for name in path:
        cmd = cmd.commands[name]
    examples = _examples(cmd)
    assert examples, f"`llmforge {' '.join(path)} --help` shows no example"
    parsed = [_parse_example(list(argv)) for argv in examples]
    assert path in [where for where, _ in parsed], f"no example runs `llmforge {' '.join(path)}`: {examples}"
    for argv, (_, problem) in zip(examples, parsed, strict=True):
        assert problem is None, f"`llmforge {shlex.join(argv)}` (in `{' '.join(path)} --help`): {problem}"


def test_an_example_with_an_unknown_option_or_command_fails_to_parse():
    assert _parse_example(["data", "build", "r.toml", "--wrkers", "2"])[1].startswith("NoSuchOption")
    assert _parse_example(["data", "biuld", "r.toml"])[1] is not None
    assert _parse_example(["data", "stats", "a", "b"])[1] is not None  # one argument too many
    assert _parse_example(["data", "stats", "runs/x/dataset"]) == (("data", "stats"), None)


def test_help_imports_no_heavy_library(helps):
    assert len(helps["runs"]) == len(COMMANDS)
    assert helps["imported"] == []


def test_plan_answers_without_torch_scipy_or_numpy(tmp_path):
    """DESIGN.md §4: `llmforge plan` answers without torch; plan/cli.py promises no numpy either."""
    result = _in_process(
        tmp_path, [["plan", "--compute", "1e21", "--json"]], modules=(*HEAVY, "scipy", "numpy")
    )
    (run,) = result["runs"]
    assert run["rc"] == 0
    assert json.loads(run["stdout"])["flops"] == pytest.approx(1e21)
    assert result["imported"] == []


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, shared_data) -> dict:
    """A small dataset and tokenizer, built through the CLI with --json (progress goes to stderr)."""
    root = tmp_path_factory.mktemp("json")
    speeches = (shared_data / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
    source = root / "source.jsonl"
    source.write_text(
        "".join(json.dumps({"text": "\n\n".join(speeches[i : i + 3])}) + "\n" for i in range(0, 240, 3))
    )
    recipe = root / "recipe.toml"
    recipe.write_text(
        tomli_w.dumps(
            {
                "run": {"name": "j", "out_dir": str(root)},
                "data": {"sources": [{"name": "shakespeare", "type": "jsonl", "path": str(source)}]},
                "tokenizer": {"vocab_size": 300, "val_fraction": 0.2},
            }
        )
    )
    out = {"recipe": recipe, "dataset": root / "j" / "dataset", "tokenizer": root / "j" / "tokenizer"}
    for stage in (["data", "build"], ["tokenize", "train"]):
        r = run_cli(*stage, str(recipe), "--json")
        assert r.returncode == 0, r.stderr[-3000:]
        out[stage[0]] = json.loads(r.stdout)
    return out


def test_building_with_json_keeps_stdout_clean(artifacts):
    assert artifacts["data"]["docs_out"] == 80
    assert artifacts["tokenize"]["vocab_size"] == 300


JSON_COMMANDS = {
    "plan": ["plan", "--compute", "1e21", "--gpu", "h100-sxm", "--gpus", "8", "--price", "2.5"],
    "plan memory": ["plan", "memory", "--params", "7.5e9", "--gpus", "64", "--zero", "3"],
    "plan shape": ["plan", "shape", "--arch", "gpt2", "--layers", "12", "--d-model", "768", "--heads", "12"],
    "plan parallel": ["plan", "parallel", "--params", "7B", "--gpus", "8", "--gpu", "a100-80gb"],
    "recipe show": ["recipe", "show", "{recipe}", "--set", "tokenizer.vocab_size=256"],
    "inspect dataset": ["inspect", "{dataset}"],
    "inspect tokenizer": ["inspect", "{tokenizer}"],
    "data stats": ["data", "stats", "{dataset}"],
    "data sample": ["data", "sample", "{dataset}", "-n", "2"],
    "tokenize compare": [
        "tokenize",
        "compare",
        "{tokenizer}",
        "--data",
        "{dataset}",
        "--val-fraction",
        "0.2",
    ],
    "eval tasks": ["eval", "tasks"],
}


@pytest.mark.parametrize("name", JSON_COMMANDS)
def test_json_output_is_json_only(artifacts, name):
    args = [
        a.format(**{k: str(v) for k, v in artifacts.items() if isinstance(v, Path)})
        for a in JSON_COMMANDS[name]
    ]
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    parsed = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert isinstance(parsed, (dict, list)) and parsed
    if name == "recipe show":
        assert parsed["tokenizer"]["vocab_size"] == 256
    if name.startswith("inspect"):
        assert parsed["valid"] is True
