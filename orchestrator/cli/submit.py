"""`ablate submit SPEC --server URL`: queue a sweep on an `ablate serve` service."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import _console
from orchestrator.cli._server import SERVER_OPTION, TOKEN_FILE_OPTION, client


def submit(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The sweep spec (YAML)."),
    server: str = SERVER_OPTION,
    token_file: Path = TOKEN_FILE_OPTION,
    key: str = typer.Option(None, "--key", help="Idempotency key: a submission repeated with the same key runs once (default: a new one)."),
    json_out: bool = typer.Option(False, "--json", help="Print the service's answer (the sweep and its trials) as JSON."),
) -> None:
    """Submit a sweep to the service, which validates it as `ablate plan` does and queues it.

    The spec's trainer.base file, when it exists here, is sent with it, so the service needs no copy.
    """
    import yaml

    from orchestrator.errors import AblateError

    if server is None:
        _console.abort("--server is required (or set ABLATE_SERVER)")
    if not spec_path.is_file():
        _console.abort(f"{spec_path}: no such spec file")
    text = spec_path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _console.abort(f"{spec_path}: not YAML: {' '.join(str(exc).split())}")
    base_text = None
    base = ((data or {}).get("trainer") or {}).get("base") if isinstance(data, dict) else None
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else spec_path.parent / base
        if base_path.is_file():
            base_text = base_path.read_text()
    try:
        with client(server, token_file) as service:
            answer = service.submit(text, base_text, key=key)
    except AblateError as exc:
        _console.abort("\n".join(f"{spec_path}: {line}" for line in str(exc).splitlines()))
    if json_out:
        _console.print_json(answer)
        return
    sweep = answer["sweep"]
    for warning in answer.get("warnings", []):
        _console.warn(warning)
    _console.out.print(f"sweep {sweep['id']}: {sweep['n_trials']} trials, {sweep['status']}", highlight=False)
    _console.out.print(
        f"follow it: `ablate status --server {server} {sweep['id']}`; dashboard: {server.rstrip('/')}/dashboard/sweeps/{sweep['id']}",
        highlight=False,
    )
