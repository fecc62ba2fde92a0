"""All terminal output of the CLI: one stdout console for results, one stderr console for messages."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
if not out.is_terminal:
    out = Console(soft_wrap=True, width=200)  # piped or captured: do not squeeze tables into 80 columns
_verbosity = 0


def set_verbosity(level: int) -> None:
    """Set the verbosity: 0 normal, <0 quieter, >0 more detail."""
    global _verbosity
    _verbosity = level


def abort(message: str, code: int = 2) -> NoReturn:
    """Print a user error (one line per problem, no traceback) and exit with `code`."""
    for line in message.splitlines() or [message]:
        err.print(f"[bold red]error:[/] {line}", markup=True, highlight=False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a warning unless quiet."""
    if _verbosity >= 0:
        err.print(f"[yellow]warning:[/] {message}", highlight=False)


def info(message: str) -> None:
    """Print an informational line unless quiet."""
    if _verbosity >= 0:
        err.print(message, highlight=False)


def print_json(data: Any) -> None:
    """Print machine-readable output on stdout (no styling, no wrapping)."""
    print(json.dumps(data, indent=2, default=str))


def print_table(table: Table) -> None:
    """Print a rich table on stdout."""
    out.print(table)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """Show a spinner while work runs (a plain line when stderr is not a terminal)."""
    if _verbosity < 0:
        yield
        return
    if not err.is_terminal:
        err.print(message, highlight=False)
        yield
        return
    with err.status(message):
        yield
