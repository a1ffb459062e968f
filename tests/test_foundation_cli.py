"""The root CLI and console: global options anywhere, results on stdout, nothing a user copies is cut at
80 columns, usage errors in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import REPO

import llmforge.cli
from llmforge.artifacts import atomic_dir, write_manifest
from llmforge.cli import root_options_first

TINY = REPO / "recipes" / "tiny.toml"
NARROW = {"COLUMNS": "80"}


def _artifact(path: Path) -> Path:
    with atomic_dir(path) as tmp:
        (tmp / "data").mkdir()
        (tmp / "data" / "00000.jsonl").write_text('{"text": "a", "id": "1"}\n')
        write_manifest(tmp, "dataset", stats={"docs": 1})
    return path


@pytest.fixture
def deep_artifact(tmp_path) -> Path:
    """A dataset at a path far longer than 80 columns."""
    return _artifact(tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "dataset"))


# ------------------------------------------------------------------------- global options anywhere


def test_quiet_after_the_subcommand_is_accepted(cli):
    """The defect: `llmforge data build r.toml --quiet` said "No such option: --quiet"."""
    r = cli("recipe", "check", str(TINY), "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --quiet took effect: no "ok" line
    loud = cli("recipe", "check", str(TINY))
    assert loud.returncode == 0 and "ok" in loud.stderr


def test_debug_after_the_subcommand_shows_the_traceback(cli):
    r = cli("recipe", "check", str(TINY), "--set", "train.lr=fast", "--debug")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and 'train.lr = "fast"' in r.stderr


def test_root_options_first_moves_only_root_flags_before_double_dash():
    command = typer.main.get_command(llmforge.cli.app)
    assert root_options_first(command, ["data", "build", "r.toml", "-q", "--debug", "--json"]) == [
        "-q",
        "--debug",
        "data",
        "build",
        "r.toml",
        "--json",
    ]
    assert root_options_first(command, ["eval", "x", "--", "--quiet"]) == ["eval", "x", "--", "--quiet"]


def test_usage_errors_are_one_line_naming_the_help(cli):
    r = cli("data", "build", "--nope", env=NARROW)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line == "error: No such option: --nope; see `llmforge data build --help`"


# --------------------------------------------------------------------- results on stdout, logs on stderr


def test_results_go_to_stdout_and_logs_to_stderr(cli, deep_artifact):
    """The defect: result tables went to stderr, so `llmforge ... | less` showed nothing."""
    r = cli("inspect", str(deep_artifact))
    assert r.returncode == 0, r.stderr
    assert "content hash" in r.stdout and "lineage" in r.stdout
    assert r.stderr == ""


def test_quiet_silences_logs_not_results(cli, deep_artifact):
    r = cli("--quiet", "inspect", str(deep_artifact))
    assert r.returncode == 0 and "content hash" in r.stdout


def test_json_keeps_stdout_json_only_and_moves_tables_to_stderr(capsys):
    from llmforge.console import configure, emit_json, summary_table

    configure(json_output=True)
    try:
        summary_table("a table", {"k": 1})
        emit_json({"k": 1})
    finally:
        configure(json_output=False)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"k": 1}
    assert "a table" in err


def test_inspect_json_is_json_only(cli, deep_artifact):
    r = cli("inspect", str(deep_artifact), "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["valid"] is True


# ------------------------------------------------------------------------------ never cut at 80 columns


def test_paths_in_results_are_whole_at_80_columns(cli, deep_artifact):
    """The defect: at COLUMNS=80 (CI logs) table cells holding a path ended in an ellipsis."""
    r = cli("inspect", str(deep_artifact), env=NARROW)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(str(deep_artifact) in line for line in lines)
    assert "…" not in r.stdout
    content_hash = json.loads((deep_artifact / "manifest.json").read_text())["content_hash"]
    assert any(content_hash in line for line in lines)  # shown whole, not its first 23 characters


def test_commands_in_a_table_are_not_wrapped_at_80_columns():
    command = "llmforge pretrain recipes/tiny.toml --set train.max_steps=400 --set train.lr=3e-4 --set a.b=1"
    code = (
        "from llmforge.console import summary_table\n"
        f"summary_table('next', [('run', {command!r}), ('path', '/x/' + 'y' * 90)], ('what', 'command'))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**NARROW, "PATH": ""}
    )
    assert r.returncode == 0, r.stderr
    assert any(command in line for line in r.stdout.splitlines()), r.stdout
    assert any("/x/" + "y" * 90 in line for line in r.stdout.splitlines()), r.stdout


def test_error_lines_are_one_line_at_80_columns(cli, tmp_path):
    missing = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "recipe.toml")
    r = cli("recipe", "check", str(missing), "--set", "train.lr=3e-4", env=NARROW)
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line == f"error: {missing}: recipe file not found"


def test_log_lines_are_not_wrapped_at_80_columns():
    code = "from llmforge.console import info, warn\ninfo('wrote ' + '/p' * 60)\nwarn('see ' + '/q' * 60)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=NARROW)
    assert r.stderr.splitlines() == ["wrote " + "/p" * 60, "warning: see " + "/q" * 60]
