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
    table = Table(title=f"{sweep['id']} ({sweep['status']}): {counts}")
    for column in ("trial", "seed", "status", "step", "best", "collapse onset", "stop reason", "attempts"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["seed"]),
            r["status"],
            "" if r["step"] is None else str(r["step"]),
            "" if r["best_score"] is None else f"{r['best_score']:.4g} @ {r['best_step']}",
            "" if r["collapse_step"] is None else str(r["collapse_step"]),
            "" if not r["stop_reason"] else f"{r['stop_reason']} @ {r['stop_step']}",
            str(r["attempts"]),
        )
    _console.print_table(table)
    for r in rows:
        if r["why"]:
            _console.out.print(f"{r['name']}: {r['why']}", highlight=False)
    if sweep["error"]:
        _console.out.print(f"error: {sweep['error']}", highlight=False)
