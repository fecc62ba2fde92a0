"""`ablate report [SWEEP_DIR]`: the ablation report of a sweep ablate ran, from its store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from orchestrator.cli import _console


def report(
    sweep_dir: Path = typer.Argument(None, metavar="SWEEP_DIR", help="A sweep directory (default: the only one under runs/)."),
    out: Path = typer.Option(None, "--out", help="Where the report goes (default: <SWEEP_DIR>/report)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report's summary as JSON."),
) -> None:
    """Write the sweep's report: effects per factor with intervals, collapse rates, survival, best checkpoints."""
    from orchestrator.cli.status import _only_sweep_dir
    from orchestrator.errors import AblateError
    from orchestrator.report import from_store, report_json, report_sweep

    sweep_dir = sweep_dir or _only_sweep_dir()
    try:
        stored = from_store(sweep_dir)
        with _console.status(f"Writing the report of {len(stored.runs)} trials..."):
            written = report_sweep(sweep_dir, out, stored=stored)
    except AblateError as exc:
        _console.abort(str(exc))
    result, files, search = written.report, written.files, written.search
    if json_out:
        summary = report_json(result)
        summary["best_checkpoints"] = written.checkpoints
        if search is not None:
            summary["search"] = search
        _console.print_json(summary)
        return
    for line in _headline(result):
        _console.out.print(line, highlight=False)
    _console.out.print(f"report: {files.html} (also {files.markdown.name}, {files.csv.name})", highlight=False)
    if search is not None:
        pruned = sum(1 for row in search if row["pruned"])
        top = search[0] if search else None
        best = "" if top is None or top["best_score"] is None else f"; best {top['name']} ({top['best_score']:.4g})"
        _console.out.print(f"search: {len(search)} trials, {pruned} pruned{best}: {out or sweep_dir / 'report'}/search.md", highlight=False)


def _headline(result: Any) -> list[str]:
    collapsed = sum(1 for s in result.summaries if s.collapse is not None)
    return [f"{result.title}: {len(result.summaries)} trials, {collapsed} collapsed"]
