"""What the commands that talk to `ablate serve` share: the --server and --token-file options, the client."""

from __future__ import annotations

from pathlib import Path

import typer

SERVER_OPTION = typer.Option(None, "--server", envvar="ABLATE_SERVER", help="The service's URL, e.g. http://127.0.0.1:8600 (env ABLATE_SERVER).")
TOKEN_FILE_OPTION = typer.Option(
    None,
    "--token-file",
    envvar="ABLATE_TOKEN_FILE",
    help="The service's token file (env ABLATE_TOKEN_FILE; the token itself may be given as env ABLATE_TOKEN; default: runs/service/token).",
)


def client(server: str, token_file: Path | None):  # noqa: ANN201 (a ServiceClient; imported lazily)
    """Return a client for `server`.

    Raises:
        ServiceError: If no token is found or the URL is not http(s).
    """
    from orchestrator.service._client import ServiceClient, resolve_token

    return ServiceClient(server, resolve_token(token_file))


def server_status(server: str, token_file: Path | None, sweep_id: str | None, json_out: bool) -> None:
    """Print the service's sweeps, or one sweep's trials (`ablate status --server`)."""
    from rich.table import Table

    from orchestrator.cli import _console
    from orchestrator.cli._trials import print_trials
    from orchestrator.errors import AblateError

    try:
        with client(server, token_file) as service:
            if sweep_id is None:
                sweeps = service.sweeps()
            else:
                sweep, rows = service.sweep(sweep_id), service.trials(sweep_id)
    except AblateError as exc:
        _console.abort(str(exc))
    if sweep_id is None:
        if json_out:
            _console.print_json(sweeps)
            return
        table = Table(title=f"{server}: {len(sweeps)} sweep(s)")
        for column in ("sweep", "status", "trials", "by status", "error"):
            table.add_column(column)
        for s in sweeps:
            counts = ", ".join(f"{n} {k}" for k, n in s["trials"].items() if n)
            table.add_row(s["id"], s["status"], str(s["n_trials"]), counts, s["error"] or "")
        _console.print_table(table)
        return
    if json_out:
        _console.print_json({"sweep": sweep["id"], "status": sweep["status"], "error": sweep["error"], "trials": rows})
        return
    counts = ", ".join(f"{n} {k}" for k, n in sweep["trials"].items() if n)
    print_trials(f"{sweep['id']} ({sweep['status']}): {counts}", rows)
    if sweep["error"]:
        _console.out.print(f"error: {sweep['error']}", highlight=False)
