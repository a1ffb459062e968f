"""Terminal output shared by every stage: one rich console on stderr, progress bars, summary tables,
JSON on stdout, and the error boundary that maps failures onto exit codes (DESIGN.md §4).

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

from rich.console import Console
from rich.markup import escape
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


state = _State()
console = Console(stderr=True, highlight=False)  # human output; silenced by --quiet
_errors = Console(stderr=True, highlight=False)  # errors and warnings; never silenced


def configure(*, quiet: bool | None = None, debug: bool | None = None) -> None:
    if quiet is not None:
        state.quiet = quiet
    if debug is not None:
        state.debug = debug
    console.quiet = state.quiet


def info(message: str) -> None:
    """A human line on stderr (silenced by --quiet)."""
    if not state.quiet:
        console.print(message)


def warn(message: str) -> None:
    _errors.print(f"[yellow]warning:[/] {escape(message)}")


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
    """Build (and print, unless --quiet) a summary table. `rows` is a mapping (key/value) or row tuples."""
    table = Table(title=title, title_justify="left", show_header=bool(columns))
    if isinstance(rows, Mapping):
        cols = columns or ("", "")
        rows = [(k, v) for k, v in rows.items()]
    else:
        cols = columns or tuple("" for _ in (rows[0] if rows else ()))
    for i, name in enumerate(cols):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(format_value(v) for v in row))
    if not state.quiet:
        console.print(table)
    return table


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
