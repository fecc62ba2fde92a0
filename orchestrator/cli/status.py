"""`ablate status [SWEEP_DIR]`: each trial's status, step, best and stop reason, from the sweep store.

With `--server URL`, the same from an `ablate serve` service: its sweeps, or one sweep's trials.
"""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli import _console
from orchestrator.cli._server import SERVER_OPTION, TOKEN_FILE_OPTION, server_status
from orchestrator.cli._trials import print_trials


def status(
    sweep_dir: Path = typer.Argument(
        None, metavar="SWEEP_DIR", help="A sweep directory (default: the only one under runs/); with --server, a sweep id."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the trials as JSON."),
    server: str = SERVER_OPTION,
    token_file: Path = TOKEN_FILE_OPTION,
) -> None:
    """Show every trial of a sweep: status, step, best score and step, and why it stopped.

    With --server: the service's sweeps, or, given a sweep id, that sweep's trials.
    """
    if server is not None:
        server_status(server, token_file, None if sweep_dir is None else str(sweep_dir), json_out)
        return
    from orchestrator.errors import AblateError, StoreError
    from orchestrator.store import SQLiteStore, objectives, trial_rows
    from orchestrator.sweepdir import SweepDir

    sweep_dir = sweep_dir or _only_sweep_dir()
    try:
        db = SweepDir(sweep_dir).require().db
    except AblateError as exc:
        _console.abort(str(exc))
    try:
        store = SQLiteStore(db)
        sweeps = store.list_sweeps()
    except StoreError as exc:
        _console.abort(str(exc))
    if not sweeps:
        _console.abort(f"{db}: holds no sweep")
    for sweep in sweeps:
        rows = trial_rows(store, sweep.id)
        judged_by = objectives(store, sweep.id)
        if json_out:
            _console.print_json({"sweep": sweep.id, "status": sweep.status, "objectives": judged_by, "trials": rows})
            continue
        counts = store.summary(sweep.id)
        print_trials(f"{sweep.id} ({sweep.status}): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), rows)
        for objective in judged_by:
            why = f": {objective['why']}" if objective["why"] else ""
            _console.out.print(f"objective ({objective['trials']} trial(s)): {objective['metric']}{why}", highlight=False)


def _only_sweep_dir() -> Path:
    from orchestrator.sweepdir import DB_NAME

    candidates = sorted(p.parent for p in Path("runs").glob(f"*/{DB_NAME}"))
    if len(candidates) != 1:
        found = ", ".join(map(str, candidates)) or "none"
        _console.abort(f"name a sweep directory (sweeps under runs/: {found})")
    return candidates[0]
