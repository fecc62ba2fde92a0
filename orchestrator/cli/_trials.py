"""The trial table `ablate status` prints, from a sweep store or from the service."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from orchestrator.cli import _console


def print_trials(title: str, rows: list[dict[str, Any]]) -> None:
    """Print one row per trial (status, step, best, collapse onset, stop reason, attempts), then why each stopped.

    Args:
        title: The table's title (the sweep, its status and counts).
        rows: The trials as `orchestrator.store.trial_rows` gives them (the service sends the same rows).
    """
    table = Table(title=title)
    for column in ("trial", "seed", "status", "step", "best", "collapse onset", "stop reason", "attempts"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["seed"]),
            r["status"] if not r.get("queue_reason") else f"{r['status']}: {r['queue_reason']}",
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
