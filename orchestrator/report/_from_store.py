"""A sweep's report from its store: the adapter between the sweep folder and the report's core.

`from_store` reads a sweep folder (its spec and every trial's history, stop and kept checkpoint) into the
`RunInput`s the core judges; `report_sweep` builds and writes the whole report of a sweep folder. `ablate report`
and the service both call them, in their own process. Rescue branches are not runs of the ablation: they are
summarised apart (`orchestrator.report._rescue`) and reported in their own section.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.collapse import CollapseConfig, Verdict
from orchestrator.errors import AblateError, StoreError
from orchestrator.report._build import Report, build_report
from orchestrator.report._render import ReportFiles, write_report
from orchestrator.report._rescue import RescueSummary, rescue_summary
from orchestrator.report._summary import RunInput
from orchestrator.spec import SweepSpec, level_label, parse_spec, read_yaml
from orchestrator.store import TERMINAL, SQLiteStore
from orchestrator.sweepdir import SweepDir

__all__ = ["StoredSweep", "SweepReport", "from_store", "report_sweep"]


@dataclass(frozen=True)
class StoredSweep:
    """A sweep as its folder holds it.

    Attributes:
        spec: The spec the sweep started from.
        runs: One `RunInput` per trial of the sweep's own, in the store's order (rescue branches are not runs).
        checkpoints: Trial name -> its kept best checkpoint (`{"step", "path"}`), or None (branches included).
        rescue: The rescue branches per remedy; None when the sweep has none.
    """

    spec: SweepSpec
    runs: list[RunInput]
    checkpoints: dict[str, dict[str, Any] | None]
    rescue: RescueSummary | None = None


@dataclass(frozen=True)
class SweepReport:
    """A written sweep report.

    Attributes:
        report: The report (summaries, effects, notes).
        files: The files written.
        checkpoints: Trial name -> its kept best checkpoint, as in `StoredSweep`.
        search: For a `search:` sweep, the ranked rows of `search.md`; else None.
    """

    report: Report
    files: ReportFiles
    checkpoints: dict[str, dict[str, Any] | None]
    search: list[dict[str, Any]] | None = field(default=None)


def from_store(sweep_dir: Path) -> StoredSweep:
    """Read a sweep folder into what the report's core judges.

    Raises:
        AblateError: If the folder holds no sweep store, or the store holds no sweep (StoreError).
    """
    folder = SweepDir(sweep_dir).require()
    with SQLiteStore(folder.db) as store:
        (sweep,) = store.list_sweeps()[:1] or [None]
        if sweep is None:
            raise StoreError(f"{folder.db}: holds no sweep")
        spec = parse_spec(read_yaml(folder.spec), source=str(folder.spec), resolve_base=False)
        runs, checkpoints, branch_histories = [], {}, {}
        trials = store.list_trials(sweep.id)
        for trial in trials:
            best = store.get_checkpoints(trial.id).get("best")
            checkpoints[trial.name] = None if best is None else {"step": best.step, "path": str(best.path)}
            # A rescue branch: summarised apart, not a run of the ablation.
            if trial.parent is not None:
                branch_histories[trial.id] = store.get_history(trial.id)
                continue
            verdict = None
            if trial.stop_reason is not None and trial.stop_reason.is_collapse and trial.stop_evidence:
                verdict = Verdict(
                    rule=trial.stop_reason.rule or "",
                    step=trial.stop_step or 0,
                    reason=str(trial.stop_evidence.get("reason", "")),
                    evidence=trial.stop_evidence,
                )
            runs.append(
                RunInput(
                    run=trial.name,
                    history=store.get_history(trial.id),
                    # A search's trials each have their own sampled values: no factor to compare (search.md ranks them).
                    levels={} if spec.search is not None else trial.levels,
                    seed=trial.seed,
                    stop_reason=trial.stop_reason if trial.status in TERMINAL else None,
                    stop_step=trial.stop_step,
                    verdict=verdict,
                    checkpoint=None if best is None else str(best.path),
                )
            )
    rescue = rescue_summary(
        trials,
        branch_histories,
        objective=spec.objective.metric,
        mode=spec.objective.mode,
        max_steps=spec.budget.max_steps,
        eval_sizes=spec.objective.eval_sizes,
    )
    return StoredSweep(spec, runs, checkpoints, rescue)


def report_sweep(sweep_dir: Path, out: Path | None = None, *, stored: StoredSweep | None = None) -> SweepReport:
    """Build and write the report of a sweep folder (and, for a search, its `search.md`).

    Args:
        sweep_dir: The sweep folder.
        out: Where the report goes (default: `<sweep_dir>/report`).
        stored: The sweep as `from_store` read it, if already read.

    Raises:
        AblateError: If the folder holds no sweep, or no trial has logged a metric yet.
    """
    stored = stored or from_store(sweep_dir)
    spec = stored.spec
    if not any(run.history for run in stored.runs):
        raise AblateError(f"{sweep_dir}: no trial has logged any metric yet")
    out = out or Path(sweep_dir) / "report"
    report = build_report(
        stored.runs,
        objective=None if spec.objective.metric == "auto" else spec.objective.metric,
        mode=spec.objective.mode,
        config=spec.pruning.collapse or CollapseConfig(),
        eval_sizes=spec.objective.eval_sizes,
        baseline=baseline_levels(spec) if spec.design.type == "one_at_a_time" else None,
        title=f"{spec.name}: ablation report",
    )
    if stored.rescue is not None:
        report = replace(report, rescue=stored.rescue)
    files = write_report(report, out)
    return SweepReport(report, files, stored.checkpoints, _search_report(spec, Path(sweep_dir), out))


def baseline_levels(spec: SweepSpec) -> dict[str, str]:
    """Return the labels of the one-at-a-time baseline point (the first point of the design)."""
    from orchestrator.design import design_points

    first = design_points(spec)[0]
    return {name: level_label(name, spec.factors[name][i], spec.factors[name]) for name, i in first.items()}


def _search_report(spec: SweepSpec, sweep_dir: Path, out: Path) -> list[dict[str, Any]] | None:
    """For a `search:` sweep, write `search.md` (trials ranked by best score, pruned ones marked); return its rows."""
    if spec.search is None:
        return None
    from orchestrator.search import search_markdown, search_rows

    with SQLiteStore(SweepDir(sweep_dir).db) as store:
        rows = search_rows(store, spec.name, spec.objective.mode)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.md").write_text(search_markdown(f"{spec.name}: search", rows, list(spec.search.space)))
    return rows
