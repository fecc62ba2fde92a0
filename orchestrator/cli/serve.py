"""`ablate serve`: the service that queues sweeps, runs them on one shared Ray cluster, and shows them."""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

import typer

from orchestrator.cli import _console


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: 127.0.0.1, this machine only)."),
    port: int = typer.Option(8600, "--port", min=0, max=65535, help="Port (default: 8600)."),
    state: Path = typer.Option(Path("runs/service"), "--state", help="State folder: queue, token, sweeps (default: runs/service)."),
    max_running: int = typer.Option(1, "--max-running", min=1, help="Sweeps run at once, sharing the Ray cluster (default: 1)."),
    address: str = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="An existing Ray cluster (default: start a local one)."),
    cpus: int = typer.Option(None, "--cpus", min=1, help="CPUs of the local Ray cluster (default: all)."),
    gpus: int = typer.Option(None, "--gpus", min=0, help="GPUs of the local Ray cluster, may be logical (default: detected)."),
    niceness: int = typer.Option(5, "--sweep-niceness", min=0, max=19, help="Run sweeps (and their trainers) this much nicer than the service, so the API stays responsive (default: 5)."),
    root: Path = typer.Option(None, "--root", help="Folder a spec's relative trainer.base is read from when its text is not sent (default: here)."),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM); with --ssl-keyfile, serve HTTPS."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="Log every request (method, path, status)."),
) -> None:
    """Serve the sweep API and dashboard; run submitted sweeps, resuming those a previous run left unfinished.

    Every request needs the token that the first start writes to STATE/token (mode 0600). Stop it with Ctrl-C:
    running sweeps are stopped cleanly and resume at the next start.
    """
    import uvicorn

    from orchestrator.errors import AblateError
    from orchestrator.service import Service, create_app

    if (ssl_certfile is None) != (ssl_keyfile is None):
        _console.abort("--ssl-certfile and --ssl-keyfile go together")
    tls = ssl_certfile is not None
    if not _is_loopback(host) and not tls:
        _console.warn(
            f"binding {host} without TLS: the token and the specs cross the network in clear text; "
            "use --ssl-certfile/--ssl-keyfile or a TLS proxy"
        )
    _check_port(host, port)
    try:
        service = Service(state, root=root, max_running=max_running, address=address, cpus=cpus, gpus=gpus, niceness=niceness)
    except AblateError as exc:
        _console.abort(str(exc))
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    _console.info(f"ablate serve: {scheme}://{shown}:{port} (state: {service.state_dir})")
    _console.info(f"token: {service.state_dir / 'token'}; dashboard: {scheme}://{shown}:{port}/login")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    # uvicorn shuts down cleanly on Ctrl-C (exit 0) and on SIGTERM (then re-raised: the signal's exit status); the
    # app's shutdown stops the running sweeps (they resume at the next start) and the Ray cluster.
    uvicorn.run(
        create_app(service),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        ssl_certfile=str(ssl_certfile) if tls else None,
        ssl_keyfile=str(ssl_keyfile) if tls else None,
        timeout_graceful_shutdown=30,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    """Refuse, in one line, a port that cannot be bound (uvicorn would print a log and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            _console.abort(f"cannot listen on {host}:{port}: {exc.strerror}")
