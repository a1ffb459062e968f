"""Terminal output shared by every stage, and the error boundary that maps failures onto exit codes
(DESIGN.md §4).

Where output goes:
- results (what the user asked for: summary tables, samples, trees) → stdout: `summary_table`,
  `print_result`. With `--json` (`configure(json_output=True)`, set by the root CLI) stdout carries only
  `emit_json`'s document and results go to stderr instead (silenced by `--quiet` there).
- progress bars, log lines, warnings → stderr: `progress`/`track`, `info`, `warn`. `--quiet` silences
  progress and log lines, never results or errors.
- errors → stderr, one line: `UserError` exits 2, anything else 1.

Nothing a user must copy is cut: log and error lines are never wrapped by rich (the terminal folds them
visually and copying gives the whole line), and a table holding a path or command is printed at its full
width rather than squeezed to the terminal's.

Exit codes: 0 success, 1 runtime failure, 2 usage or input error (`UserError`).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user (recipe, flag, file, artifact): exit 2 with one line, no traceback."""


@dataclass
class _State:
    quiet: bool = False
    debug: bool = os.environ.get("LLMFORGE_DEBUG", "") not in ("", "0")
    json_output: bool = False  # --json: stdout holds one JSON document, nothing else


state = _State()
console = Console(stderr=True, highlight=False)  # progress and log lines; silenced by --quiet
_results = Console(highlight=False)  # results on stdout (whatever sys.stdout is when printing)
_errors = Console(stderr=True, highlight=False)  # errors and warnings; never silenced


def configure(
    *, quiet: bool | None = None, debug: bool | None = None, json_output: bool | None = None
) -> None:
    if quiet is not None:
        state.quiet = quiet
    if debug is not None:
        state.debug = debug
    if json_output is not None:
        state.json_output = json_output
    console.quiet = state.quiet


def info(message: str) -> None:
    """A human log line on stderr (rich markup; silenced by --quiet; never wrapped, so paths stay whole)."""
    if not state.quiet:
        console.print(message, soft_wrap=True)


def warn(message: str) -> None:
    _errors.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def results_console() -> Console:
    """The console results go to: stdout, or stderr while stdout is reserved for `--json`."""
    return _errors if state.json_output else _results  # stdout is reserved for the JSON document


def print_result(renderable: RenderableType, *, full_width: bool = False) -> None:
    """Print a result (a table, a panel, a tree, a line of markup) to stdout (stderr under --json).

    `full_width` prints it at its natural width when that is wider than the terminal, so nothing in it is
    wrapped or cut (for paths and commands the user copies)."""
    if state.json_output and state.quiet:  # on stderr beside the JSON, a result is a log line
        return
    out = results_console()
    if isinstance(renderable, str):
        out.print(renderable, soft_wrap=True)
        return
    if full_width:
        natural = Measurement.get(out, out.options.update_width(1 << 16), renderable).maximum
        if natural > out.width:  # rich caps print(width=) at the console's width: print on a wider one
            out = Console(
                file=out.file,
                width=natural,
                highlight=False,
                force_terminal=out.is_terminal,
                color_system=out.color_system,  # type: ignore[arg-type]
            )
    out.print(renderable)


def emit_json(obj: Any) -> None:
    """Machine output: the only thing written to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def progress(*, transient: bool = False) -> Progress:
    """A rich progress bar with count, rate and ETA; hidden under --quiet.

    The rate column shows the task's `rate` field: pass `rate=rate_text(done, elapsed, unit)` on update."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=state.quiet,
        refresh_per_second=4,
    )


def rate_text(done: float, elapsed_s: float, unit: str) -> str:
    if elapsed_s <= 0:
        return f"- {unit}/s"
    r = done / elapsed_s
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if r >= scale:
            return f"{r / scale:.2f}{suffix} {unit}/s"
    return f"{r:.1f} {unit}/s"


def track(items: Iterable, *, total: int | None = None, description: str = "", unit: str = "it") -> Iterator:
    """Iterate with a progress bar showing rate (in `unit`/s) and ETA."""
    import time

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress() as bar:
        task = bar.add_task(description, total=total, rate="")
        start = time.perf_counter()
        for i, item in enumerate(items, 1):
            yield item
            bar.update(task, completed=i, rate=rate_text(i, time.perf_counter() - start, unit))


def summary_table(
    title: str, rows: Sequence[Sequence[Any]] | Mapping[str, Any], columns: Sequence[str] = ()
) -> Table:
    """Build and print a results table (stdout; see the module docstring). `rows` is a mapping (key/value)
    or row tuples. The title is printed as a line of its own, so a path in it is never wrapped; a column
    holding a path or a command is never wrapped or cut either."""
    if isinstance(rows, Mapping):
        cols = columns or ("", "")
        rows = [(k, v) for k, v in rows.items()]
    else:
        cols = columns or tuple("" for _ in (rows[0] if rows else ()))
    cells = [[format_value(v) for v in row] for row in rows]
    table = Table(show_header=bool(columns))
    copyable = False
    for i, name in enumerate(cols):
        whole = any(i < len(row) and _must_stay_whole(row[i]) for row in cells)
        copyable |= whole
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=whole, overflow="fold")
    for row in cells:
        table.add_row(*(escape(c) for c in row))
    if title:
        print_result(f"[bold]{escape(title)}[/]")
    print_result(table, full_width=copyable)
    return table


def _must_stay_whole(text: str) -> bool:
    """A command, or one word (a path, a hash, a URL): wrapping would break what the user copies."""
    return text.startswith(("llmforge ", "--set ", "accelerate ", "torchrun ")) or not any(
        c.isspace() for c in text.strip()
    )


def format_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:,.4g}"
    return str(v)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


@contextmanager
def error_boundary() -> Iterator[None]:
    """Turn exceptions into exit codes: UserError → 2 (one line), anything else → 1.

    With --debug (or LLMFORGE_DEBUG=1) the traceback is printed as well.
    """
    try:
        yield
    except UserError as e:
        if state.debug:
            traceback.print_exc()
        _errors.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        _errors.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary is the one place that catches everything
        if state.debug:
            traceback.print_exc()
            raise SystemExit(EXIT_RUNTIME) from None
        _errors.print(
            f"[bold red]error:[/] {type(e).__name__}: {escape(str(e))}\n[dim](run with --debug for the traceback)[/]",
            soft_wrap=True,
        )
        raise SystemExit(EXIT_RUNTIME) from None


def quiet_hf_libraries() -> None:
    """Silence transformers/datasets/peft notices and per-file progress bars: the stages report progress and
    problems themselves (imported lazily: the CLI starts without them)."""
    import logging
    import warnings

    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # peft warns on every save of an adapter whose embedding trains (role tokens added): that is intended
    warnings.filterwarnings("ignore", message=".*save_embedding_layers.*")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
