"""Read-side views of the store: what `ablate status`, the progress display and the service show of a sweep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.store._sqlite import SQLiteStore

__all__ = ["TERMINAL", "objectives", "progress_thread", "started", "trial_rows"]

TERMINAL = ("completed", "stopped", "failed", "cancelled")
"""The statuses of a trial that has ended."""


def started(store: SQLiteStore, trial_id: str) -> list[dict[str, Any]]:
    """Return what was recorded when each of a trial's attempts started (its launcher's `describe`, and more)."""
    return [dict(event.data) for event in store.list_events(trial_id, kind="started")]


def objectives(store: SQLiteStore, sweep_id: str) -> list[dict[str, Any]]:
    """Return the distinct objectives the sweep's trials are judged by, each `{"metric", "why", "trials"}`.

    A trial records its objective once it is known (`objective: auto` resolves at its first evaluation).
    """
    found: dict[tuple[str, str | None], int] = {}
    for record in store.list_trials(sweep_id):
        for event in store.list_events(record.id, kind="objective")[:1]:
            key = (str(event.data.get("metric")), event.data.get("why"))
            found[key] = found.get(key, 0) + 1
    return [{"metric": metric, "why": why, "trials": n} for (metric, why), n in found.items()]


def trial_rows(store: SQLiteStore, sweep_id: str) -> list[dict[str, Any]]:
    """Return one JSON-ready row per trial: status, step, best, stop reason (for `ablate status` and progress)."""
    rows = []
    for r in store.list_trials(sweep_id):
        queue_reason = None
        if r.status == "queued":
            # A Slurm job waiting in the queue: Slurm's own reason (Resources, Priority, QOSMaxJobsPerUserLimit...).
            waits = store.list_events(r.id, kind="queued")
            queue_reason = waits[-1].data.get("reason") if waits else None
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "seed": r.seed,
                "levels": r.levels,
                "status": r.status,
                "step": r.last_step,
                "best_step": r.best_step,
                "best_score": r.best_score,
                "stop_reason": r.stop_reason,
                "stop_step": r.stop_step,
                "collapse_step": r.collapse_step,
                "attempts": r.attempts,
                "parent": r.parent,
                "from_step": r.from_step,
                "remedy": r.remedy,
                "why": (r.stop_evidence or {}).get("reason"),
                "warnings": [
                    {"rule": e.data.get("rule"), "step": e.data.get("step")}
                    for e in store.list_events(r.id, kind="collapse_warning")
                ],
                "queue_reason": queue_reason,
            }
        )
    return rows


def progress_thread(
    store_path: Path, sweep_id: str, render: Callable[[list[dict[str, Any]]], None], stop: threading.Event, every_s: float = 1.0
) -> threading.Thread:
    """Start a thread that reads the store every `every_s` and calls `render(rows)` until `stop` is set."""

    def loop() -> None:
        store = SQLiteStore(store_path)
        try:
            while not stop.is_set():
                render(trial_rows(store, sweep_id))
                stop.wait(every_s)
            render(trial_rows(store, sweep_id))
        finally:
            store.close()

    thread = threading.Thread(target=loop, name="ablate-progress", daemon=True)
    thread.start()
    return thread
