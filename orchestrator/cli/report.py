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
    from orchestrator.engine import DB_NAME
    from orchestrator.errors import AblateError
    from orchestrator.report import build_report, report_json, write_report

    sweep_dir = sweep_dir or _only_sweep_dir()
    if not (sweep_dir / DB_NAME).is_file():
        _console.abort(f"{sweep_dir}: not a sweep directory (no {DB_NAME}); run `ablate run SPEC` first")
    try:
        spec, runs, checkpoints = _runs_from_store(sweep_dir)
    except AblateError as exc:
        _console.abort(str(exc))
    if not any(run.history for run in runs):
        _console.abort(f"{sweep_dir}: no trial has logged any metric yet")
    from orchestrator.collapse import CollapseConfig

    baseline = _baseline_levels(spec) if spec.design.type == "one_at_a_time" else None
    with _console.status(f"Writing the report of {len(runs)} trials..."):
        result = build_report(
            runs,
            objective=None if spec.objective.metric == "auto" else spec.objective.metric,
            mode=spec.objective.mode,
            config=spec.pruning.collapse or CollapseConfig(),
            baseline=baseline,
            title=f"{spec.name}: ablation report",
        )
        files = write_report(result, out or sweep_dir / "report")
        search = _search_report(spec, sweep_dir, out or sweep_dir / "report")
    if json_out:
        summary = report_json(result)
        summary["best_checkpoints"] = checkpoints
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


def _search_report(spec: Any, sweep_dir: Path, out: Path) -> list[dict[str, Any]] | None:
    """For a `search:` sweep, write `search.md` (trials ranked by best score, pruned ones marked); return its rows."""
    if spec.search is None:
        return None
    from orchestrator.engine import DB_NAME
    from orchestrator.search import search_markdown, search_rows
    from orchestrator.store import SQLiteStore

    with SQLiteStore(sweep_dir / DB_NAME) as store:
        rows = search_rows(store, spec.name, spec.objective.mode)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.md").write_text(search_markdown(f"{spec.name}: search", rows, list(spec.search.space)))
    return rows


def _runs_from_store(sweep_dir: Path) -> tuple[Any, list[Any], dict[str, Any]]:
    from orchestrator.collapse import Verdict
    from orchestrator.engine import DB_NAME
    from orchestrator.report import RunInput
    from orchestrator.spec import parse_spec, read_yaml
    from orchestrator.store import SQLiteStore

    store = SQLiteStore(sweep_dir / DB_NAME)
    (sweep,) = store.list_sweeps()[:1] or [None]
    if sweep is None:
        from orchestrator.errors import StoreError

        raise StoreError(f"{sweep_dir / DB_NAME}: holds no sweep")
    spec_file = sweep_dir / "spec.yaml"
    spec = parse_spec(read_yaml(spec_file), source=str(spec_file), resolve_base=False)
    runs, checkpoints = [], {}
    for trial in store.list_trials(sweep.id):
        verdict = None
        if trial.stop_reason and trial.stop_reason.startswith("collapse:") and trial.stop_evidence:
            verdict = Verdict(
                rule=trial.stop_reason.split(":", 1)[1],
                step=trial.stop_step or 0,
                reason=str(trial.stop_evidence.get("reason", "")),
                evidence=trial.stop_evidence,
            )
        stop_reason = trial.stop_reason if trial.status in ("completed", "stopped", "failed", "cancelled") else None
        best = store.get_checkpoints(trial.id).get("best")
        checkpoints[trial.name] = None if best is None else {"step": best.step, "path": str(best.path)}
        runs.append(
            RunInput(
                run=trial.name,
                history=store.get_history(trial.id),
                # A search's trials each have their own sampled values: no factor to compare (search.md ranks them).
                levels={} if spec.search is not None else trial.levels,
                seed=trial.seed,
                stop_reason=stop_reason,
                stop_step=trial.stop_step,
                verdict=verdict,
                checkpoint=None if best is None else str(best.path),
            )
        )
    return spec, runs, checkpoints


def _baseline_levels(spec: Any) -> dict[str, str]:
    """Return the labels of the one-at-a-time baseline point (the first point of the design)."""
    from orchestrator.design import design_points
    from orchestrator.spec import level_label

    first = design_points(spec)[0]
    return {name: level_label(name, spec.factors[name][i], spec.factors[name]) for name, i in first.items()}


def _headline(result: Any) -> list[str]:
    collapsed = sum(1 for s in result.summaries if s.collapse is not None)
    return [f"{result.title}: {len(result.summaries)} trials, {collapsed} collapsed"]
