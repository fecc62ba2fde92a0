"""`ablate cancel SWEEP --server URL`: cancel a sweep on an `ablate serve` service."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import _console
from orchestrator.cli._server import SERVER_OPTION, TOKEN_FILE_OPTION, client


def cancel(
    sweep_id: str = typer.Argument(..., metavar="SWEEP", help="The sweep's id (as `ablate submit` printed it)."),
    server: str = SERVER_OPTION,
    token_file: Path = TOKEN_FILE_OPTION,
    json_out: bool = typer.Option(False, "--json", help="Print the sweep as JSON."),
) -> None:
    """Cancel a sweep: a queued one never runs; a running one's trainers are stopped cleanly."""
    from orchestrator.errors import AblateError

    if server is None:
        _console.abort("--server is required (or set ABLATE_SERVER)")
    try:
        with client(server, token_file) as service:
            sweep = service.cancel(sweep_id)
    except AblateError as exc:
        _console.abort(str(exc))
    if json_out:
        _console.print_json(sweep)
        return
    state = sweep["status"] if sweep["status"] == "cancelled" else "cancelling (its trainers are being stopped)"
    _console.out.print(f"sweep {sweep['id']}: {state}", highlight=False)
