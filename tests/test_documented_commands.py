"""Every `llmforge …` command the documentation shows is one the CLI accepts, and the cheap ones run as written.

Commands are gathered from three places a user copies them from: every command's `--help` (its docstring and
epilog examples, walked through the typer tree as tests/test_cli_conventions.py does), the usage comments at
the top of `recipes/*.toml`, and the ```bash blocks of README.md. A line is read the way bash would split it:
`\\` continuations joined, comments dropped, `;`/`&&`/`|` separating commands, `for …; do …; done` bodies kept,
`{a,b}` braces and globs expanded, redirections dropped, and `python -m llmforge` / `torchrun … -m llmforge` /
`accelerate launch … -m llmforge` read as `llmforge`. Other shell commands (`cp`, `lm_eval`, `make`) are skipped.

Each command must parse against the real click tree (the subcommand path exists, every option is known, every
value converts, nothing is left over). The cheap ones (`plan …`, `recipe …`, `inspect`, `data stats/sample`,
`card`, `report`, `bias probes`) are
also run, from a copy of the repository layout (`recipes/`, `../shared/data`) whose `runs/tiny` is built by a
fixture through the documented stage commands with a smaller corpus; they must exit 0 (or 2 where the
documentation says the example is an error). This is the test that runs the documented examples;
test_cli_conventions.py only checks that each `--help` shows one.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from conftest import REPO, SHARED_DATA
from typer.exceptions import TyperException  # base of the usage errors of typer's own copy of click

import llmforge.cli
from llmforge.recipe import tomllib

ROOT = typer.main.get_command(llmforge.cli.app)
SEPARATORS = {";", "&&", "||", "|", "&"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>>", "&>"}
SHELL_KEYWORDS = {"do", "then", "else"}
# Values a documented shell variable stands for when the command is checked.
VARIABLES = {"$r": "recipes/tiny.toml", "$c": "runs/tiny/checkpoints/step-000200"}
# Command paths cheap enough to run (no training, no evaluation); everything else is parsed only.
RUN_PREFIXES = (
    ("plan",),
    ("recipe",),
    ("inspect",),
    ("data", "stats"),
    ("data", "sample"),
    ("card",),
    ("report",),
    ("bias", "probes"),
    ("export",),  # a tiny checkpoint: seconds
)


@dataclass(frozen=True)
class Documented:
    where: str  # "README.md:118", "recipes/gpt2-124m.toml:5", "--help of plan ladder"
    line: str  # the shell line as documented (continuations joined)
    argv: tuple[str, ...]  # the arguments after `llmforge`
    expect_error: bool = False  # the documentation says this example exits 2

    def __str__(self) -> str:
        return f"{self.where}: {self.line}"


# ------------------------------------------------------------------------------------------ shell reading


def _expand_braces(word: str) -> list[str]:
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    head, tail = word[: match.start()], word[match.end() :]
    return [out for part in match.group(1).split(",") for out in _expand_braces(head + part + tail)]


def _shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, redirections and `do`/`then` keywords removed."""
    commands, current, skip_next = [], [], False
    for word in _shell_words(line):
        if skip_next:
            skip_next = False
        elif word in SEPARATORS:
            commands.append(current)
            current = []
        elif word in REDIRECTIONS:
            skip_next = True
        elif not current and word in SHELL_KEYWORDS:
            continue
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def _llmforge_args(words: list[str]) -> list[str] | None:
    """The arguments after `llmforge` (also `python -m llmforge`, `torchrun … -m llmforge`), or None."""
    if words and words[0] == "llmforge":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "llmforge":
            return words[i + 2 :]
    return None


def _comment(line: str) -> str:
    """The trailing `# …` comment of a shell line ('' if none), outside quotes."""
    words = shlex.shlex(line, posix=True)
    words.whitespace_split = True
    words.commenters = ""
    try:
        tokens = list(words)
    except ValueError:
        return ""
    for i, token in enumerate(tokens):
        if token.startswith("#"):
            return " ".join(tokens[i:])
    return ""


def commands_in(where: str, line: str) -> list[Documented]:
    expect_error = bool(re.search(r"#\s*error:", line))
    out = []
    for words in _simple_commands(line):
        args = _llmforge_args(words)
        if args is not None:
            out.append(Documented(where, line, tuple(args), expect_error))
    return out


def _joined(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines with `\\` continuations joined (numbered by their first line)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, text in lines:
        if pending is not None:
            number, text = pending[0], pending[1] + " " + text.strip()
        if text.rstrip().endswith("\\"):
            pending = (number, text.rstrip()[:-1])
            continue
        pending = None
        out.append((number, text))
    if pending is not None:
        out.append(pending)
    return out


def _is_command_line(text: str) -> bool:
    text = text.strip()
    return text.startswith(("llmforge ", "for ", "torchrun ", "accelerate launch ", "python -m llmforge"))


# ------------------------------------------------------------------------------------------- the sources


def _command_tree(cmd=ROOT, path: tuple[str, ...] = ()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _command_tree(sub, (*path, name))


def help_commands() -> list[Documented]:
    out = []
    for path, cmd in _command_tree():
        text = "\n".join(t for t in (cmd.help, cmd.epilog) if t)
        for line in text.splitlines():
            line = re.sub(r"^\s*Examples?:\s*", "", line).strip()
            if _is_command_line(line):
                out += commands_in(f"--help of llmforge {' '.join(path)}".rstrip(), line)
    return out


def recipe_commands() -> list[Documented]:
    out = []
    for recipe in sorted((REPO / "recipes").glob("*.toml")):
        header = []
        for number, text in enumerate(recipe.read_text().splitlines(), 1):
            if not text.startswith("#"):
                break
            header.append((number, text.lstrip("#")))
        for number, line in _joined(header):
            if _is_command_line(line):
                out += commands_in(f"recipes/{recipe.name}:{number}", line.strip())
    return out


def readme_commands() -> list[Documented]:
    out, block = [], None
    for number, text in enumerate((REPO / "README.md").read_text().splitlines(), 1):
        if text.startswith("```"):
            if block is None:
                block = [] if text.strip() in ("```bash", "```sh", "```shell") else "other"
            else:
                if block != "other":
                    for start, line in _joined(block):
                        if _is_command_line(line):
                            out += commands_in(f"README.md:{start}", line.strip())
                block = None
        elif isinstance(block, list):
            block.append((number, text))
    return out


DOCUMENTED = help_commands() + recipe_commands() + readme_commands()


def test_the_documentation_shows_commands_from_every_source():
    wheres = {d.where.split(":")[0].split(" of ")[0] for d in DOCUMENTED}
    assert {"--help", "README.md"} <= wheres and any(w.startswith("recipes/") for w in wheres)
    assert len(DOCUMENTED) > 60


# ------------------------------------------------------------------------------------------------ parsing


def _expanded(argv: tuple[str, ...], cwd: Path | None = None) -> list[str]:
    """Shell expansion of the arguments: variables, braces, then globs (kept as written when nothing
    matches, as bash does)."""
    out = []
    for word in argv:
        word = VARIABLES.get(word, word)
        for item in _expand_braces(word):
            matches = sorted(glob.glob(item, root_dir=cwd)) if cwd and glob.has_magic(item) else []
            out += matches or [item]
    return out


class ParseError(Exception):
    pass


def _is_group(cmd) -> bool:
    return hasattr(cmd, "commands")


def parse(args: list[str]) -> tuple[str, ...]:
    """Parse `llmforge ARGS` against the command tree without running anything (`make_context` converts
    every value; no callback runs). Returns the command path; ParseError says what does not parse."""
    try:
        return _parse(args)
    except TyperException as e:
        raise ParseError(e.format_message() if hasattr(e, "format_message") else str(e)) from None


def _parse(args: list[str]) -> tuple[str, ...]:
    ctx = ROOT.make_context("llmforge", list(args))
    cmd, path = ROOT, []
    while _is_group(cmd):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            if not cmd.invoke_without_command:
                raise ParseError(f"llmforge {' '.join(path)} needs a subcommand")
            return tuple(path)
        name, sub, sub_args = cmd.resolve_command(ctx, rest)
        if sub is None:
            raise ParseError(f"no such command {rest[0]!r}")
        path.append(name)
        ctx = sub.make_context(name, sub_args, parent=ctx)
        cmd = sub
    if ctx.args:
        raise ParseError(f"unexpected extra arguments {ctx.args}")
    return tuple(path)


@pytest.mark.parametrize("doc", DOCUMENTED, ids=str)
def test_documented_command_parses(doc):
    try:
        parse(_expanded(doc.argv))
    except ParseError as e:
        pytest.fail(f"{doc}\n  does not parse: {e}")


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain", "run", "recipes/tiny.toml"],  # the old `plan ladder --help` loop
        ["data", "recipes/gpt2-124m.toml"],  # the old gpt2-124m.toml usage comment
        ["tokenize", "recipes/gpt2-124m.toml"],
        ["plan", "shape", "--layer", "2"],
        ["eval", "perplexity"],
    ],
)
def test_parse_refuses_what_the_cli_refuses(argv):
    """The checker is only as good as its refusals: commands that exit 2 must not parse."""
    with pytest.raises(ParseError):
        parse(argv)
    r = subprocess.run([sys.executable, "-m", "llmforge", *argv], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2


# ------------------------------------------------------------------------------------------------ running


def _runnable(doc: Documented) -> bool:
    try:
        path = parse(_expanded(doc.argv))
    except ParseError:
        return False
    return any(path[: len(prefix)] == prefix for prefix in RUN_PREFIXES)


RUNNABLE = [d for d in DOCUMENTED if _runnable(d)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """`main/` laid out like the repository (recipes/, ../shared/data) with runs/tiny built by the documented
    stage commands on a smaller slice of the tiny recipe's corpus; the cwd the documented commands run in."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    root = tmp_path_factory.mktemp("docs")
    main = root / "main"
    shutil.copytree(REPO / "recipes", main / "recipes")
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(SHARED_DATA)
    smaller = ["--set", "data.sources.0.max_bytes=300000", "--set", "tokenizer.vocab_size=512", "--quiet"]
    for stage in (["data", "build"], ["tokenize", "train"], ["tokenize", "encode"]):
        r = subprocess.run(
            [sys.executable, "-m", "llmforge", *stage, "recipes/tiny.toml", *smaller],
            cwd=main, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
    # The checkpoints the documented commands name (steps 50 and 200), from a much smaller model.
    small_model = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2",
                   "train.global_batch_tokens=512", "train.micro_batch=2", "train.eval_tokens=1024"]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "llmforge", "pretrain", "recipes/tiny.toml", "--quiet",
         *(a for kv in small_model for a in ("--set", kv))],
        cwd=main, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    # `plan frontier --run runs/tiny` reads the pretrain results written above; `plan fit losses.csv` a table.
    rows = ["params,tokens,loss"] + [
        f"{n:.0f},{6e18 / (6 * n):.0f},{1.69 + 406.4 / n**0.34 + 410.7 / (1e18 / n) ** 0.28:.4f}"
        for n in (1e7, 3e7, 1e8, 3e8, 1e9)
    ]
    (main / "losses.csv").write_text("\n".join(rows) + "\n")
    return main


@pytest.mark.parametrize("doc", RUNNABLE, ids=str)
def test_documented_command_runs(workspace, doc):
    argv = _expanded(doc.argv, cwd=workspace)
    if any(glob.has_magic(a) for a in argv):
        pytest.skip(f"{doc}: needs runs this test does not build ({[a for a in argv if glob.has_magic(a)]})")
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run(
        [sys.executable, "-m", "llmforge", *argv], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    expected = 2 if doc.expect_error else 0
    assert r.returncode == expected, f"{doc}\n  exit {r.returncode}:\n{r.stderr[-3000:]}"


# ------------------------------------------------------------------------------- checkpoints that exist


def _kept_steps(recipe: Path) -> set[int]:
    """The checkpoint steps a finished run of `recipe` keeps (every checkpoint_every; the last keep_last, plus
    every multiple of keep_every)."""
    train = tomllib.loads(recipe.read_text())["train"]
    every, last = train.get("checkpoint_every", 250), train["max_steps"]
    saved = sorted({*range(every, last + 1, every), last})
    keep_every = train.get("keep_every") or 0
    return set(saved[-train.get("keep_last", 2) :]) | {s for s in saved if keep_every and s % keep_every == 0}


def test_documented_checkpoints_are_ones_the_tiny_recipe_writes():
    """README and --help once used step-000300; recipes/tiny.toml writes steps 50–200."""
    kept = _kept_steps(REPO / "recipes" / "tiny.toml")
    named = {
        (d.where, int(step))
        for d in DOCUMENTED
        for step in re.findall(r"runs/tiny/(?:checkpoints|reports/[^/ ]+)/step-(\d{6})", d.line)
    }
    assert named, "no documented command names a runs/tiny checkpoint"
    missing = sorted((where, step) for where, step in named if step not in kept)
    assert not missing, f"steps the tiny recipe never keeps ({sorted(kept)}): {missing}"
