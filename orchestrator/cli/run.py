"""`ablate run SPEC`: run a sweep on Ray Tune, with collapse stops, ASHA, best checkpoints and resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import typer

from orchestrator.cli import _console


def run(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The sweep spec (YAML)."),
    out: Path = typer.Option(None, "--out", help="The sweep directory (default: runs/<name>). An existing one resumes."),
    address: str = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="An existing Ray cluster (default: start a local one)."),
    cpus: int = typer.Option(None, "--cpus", min=1, help="CPUs of the local Ray cluster (default: all)."),
    gpus: int = typer.Option(None, "--gpus", min=0, help="GPUs of the local Ray cluster, may be logical (default: detected)."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Check every trial against the trainer's config first."),
) -> None:
    """Run every trial of a sweep; stop collapsing trials; keep each trial's best checkpoint.

    Running it again on the same directory resumes the sweep: finished trials are not rerun, the others resume
    from their latest checkpoints. Ctrl-C stops every trainer cleanly and leaves the sweep resumable.

    Exit status: 0 when every trial completed or was stopped by a collapse rule or the scheduler; 1 when any trial
    failed after its retries (each named on stderr); 2 on bad input (nothing launched); 130 when interrupted.
    """
    from orchestrator.engine import run_sweep
    from orchestrator.errors import AblateError
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec
    from orchestrator.sweepdir import SweepDir

    try:
        spec = load_spec(spec_path)
    except AblateError as exc:
        _console.abort(str(exc))
    sweep_dir = out if out is not None else Path("runs") / spec.name
    try:
        if validate:
            with _console.status(f"Checking the trials against {spec.trainer.backend}'s config..."):
                checked = preflight(spec, sweep_dir, build=False)
        else:
            checked = preflight(spec, sweep_dir, validate=False, build=False)
    except AblateError as exc:
        _console.abort(str(exc))
    bad = checked.errors()
    if bad:
        _console.abort("\n".join(f"{spec_path}: trial {t.name} ({t.id}): {p}" for t, p in bad))
    n_trials = len(checked.trials) if spec.search is None else spec.search.num_samples
    _console.info(f"sweep {spec.name}: {n_trials} trials, results in {sweep_dir}")
    text = spec_path.read_text()
    outcome = run_with_progress(
        spec.name,
        n_trials,
        lambda on_start: run_sweep(spec, text, sweep_dir, address=address, num_cpus=cpus, num_gpus=gpus, on_start=on_start),
    )
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items() if n)
    _console.out.print(f"sweep {spec.name}: {counts}", highlight=False)
    _console.out.print(f"results: {sweep_dir} (store: {SweepDir(sweep_dir).db}); see `ablate status {sweep_dir}`", highlight=False)
    if outcome.interrupted:
        _console.out.print(f"interrupted: resume with `ablate run {spec_path} --out {sweep_dir}`", highlight=False)
        raise typer.Exit(130)
    if outcome.failed:
        lines = [_failure(record) for record in outcome.failed]
        lines.append(
            f"{len(outcome.failed)} of {sum(outcome.counts.values())} trials failed after their retries "
            f"(execution.max_failures); rerun `ablate run {spec_path} --out {sweep_dir}` to retry them"
        )
        _console.abort("\n".join(lines), code=1)


def run_with_progress(name: str, n_trials: int, start: Callable[[Callable[[Any], None]], Any]) -> Any:
    """Run a sweep under the live view and return what `start(on_start)` returns; an AblateError aborts (exit 2).

    `start` runs the sweep and calls `on_start(store)` once its trials are registered: the view then follows the
    store until the sweep returns.
    """
    from orchestrator.errors import AblateError
    from orchestrator.store import progress_thread

    view = _Progress(name, n_trials)
    stop = threading.Event()
    started: list[threading.Thread] = []

    def on_start(store: Any) -> None:
        started.append(progress_thread(Path(store.path), name, view.render, stop))

    try:
        return start(on_start)
    except AblateError as exc:
        _console.abort(str(exc))
    finally:
        stop.set()
        for thread in started:
            thread.join(timeout=5)
        view.close()


def _failure(record: Any) -> str:
    """One line on a failed trial: its name and id, attempts, exit code, and where its log is."""
    evidence = record.stop_evidence or {}
    line = f"trial {record.name} ({record.id}) failed after {record.attempts} attempt(s)"
    if evidence.get("exit_code") is not None:
        line += f", exit code {evidence['exit_code']}"
    where = evidence.get("log") or evidence.get("error")
    if where:
        line += f"; see {where}"
    last = (record.stderr_tail or "").strip().splitlines()
    return f"{line}; last stderr line: {last[-1].strip()}" if last else line


class _Progress:
    """Live view of a sweep: a rich table on a terminal, a line per change otherwise."""

    def __init__(self, name: str, n_trials: int) -> None:
        self._name = name
        self._n = n_trials
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._live: Any = None
        self._t0 = time.monotonic()
        if _console.err.is_terminal:
            from rich.live import Live

            self._live = Live(console=_console.err, refresh_per_second=2, transient=False)
            self._live.start()

    def render(self, rows: list[dict[str, Any]]) -> None:
        if self._live is not None:
            self._live.update(self._table(rows))
            return
        for row in rows:
            key = (row["status"], row["stop_reason"])
            if self._seen.get(row["id"]) != key:
                self._seen[row["id"]] = key
                if row["status"] in ("running", "completed", "stopped", "failed", "cancelled"):
                    _console.info(_line(row, time.monotonic() - self._t0))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()

    def _table(self, rows: list[dict[str, Any]]) -> Any:
        from rich.table import Table

        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        best = max((r for r in rows if r["best_score"] is not None), key=lambda r: r["best_score"], default=None)
        title = f"{self._name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if best is not None:
            title += f"; best {best['best_score']:.4g} ({best['name']} @ {best['best_step']})"
        table = Table(title=title, title_justify="left")
        for column in ("trial", "status", "step", "best", "stop"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["name"],
                row["status"],
                "" if row["step"] is None else str(row["step"]),
                "" if row["best_score"] is None else f"{row['best_score']:.4g} @ {row['best_step']}",
                _stop_text(row),
            )
        return table


def _stop_text(row: dict[str, Any]) -> str:
    if not row["stop_reason"]:
        return ""
    text = f"{row['stop_reason']} @ {row['stop_step']}"
    return f"{text}: {row['why']}" if row.get("why") else text


def _line(row: dict[str, Any], elapsed: float) -> str:
    best = "" if row["best_score"] is None else f", best {row['best_score']:.4g} @ {row['best_step']}"
    stop = f" ({_stop_text(row)})" if row["stop_reason"] else ""
    return f"[{elapsed:6.0f}s] {row['name']}: {row['status']}{stop}{best}"
