"""`build_report`: runs (from logs or from the sweep store) -> per-run summaries and per-factor effects."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.collapse import CollapseConfig, Mode, build_rules, build_signs
from orchestrator.evalsets import eval_set
from orchestrator.history import choose_objective, is_validation_metric, resolve_objective, series
from orchestrator.report._effects import Effects, compute_effects
from orchestrator.report._rescue import RescueSummary
from orchestrator.report._stats import DEFAULT_METHODS, IntervalMethods
from orchestrator.report._summary import RunInput, RunSummary, summarize_run

__all__ = ["Report", "build_report"]


@dataclass(frozen=True)
class Report:
    """What a report says, before it is written out.

    Attributes:
        title: The report's title.
        mode: `max` or `min`.
        runs: The runs' inputs, in the order given (the plots draw their histories).
        summaries: One summary per run, in the same order.
        effects: The per-factor effects.
        notes: Plain sentences about the analysis itself (e.g. runs judged by different objectives).
        judged_by: One sentence per objective: why it was chosen, its evaluation set's size, how noise is judged.
        rescue: The sweep's rescue branches per remedy (kept out of the runs and effects); None when it has none.
    """

    title: str
    mode: Mode
    runs: tuple[RunInput, ...]
    summaries: tuple[RunSummary, ...]
    effects: Effects
    notes: tuple[str, ...]
    judged_by: tuple[str, ...] = ()
    rescue: RescueSummary | None = None

    @property
    def objectives(self) -> list[str]:
        """Return the distinct objectives the runs are judged by, in order of appearance."""
        return list(dict.fromkeys(s.objective for s in self.summaries if s.objective))


def objective_notes(
    runs: Sequence[RunInput], summaries: Sequence[RunSummary], objective: str | None, eval_sizes: Mapping[str, int] | None
) -> list[str]:
    """Return one sentence per distinct objective: why it was chosen and the size of its evaluation set."""
    notes: dict[str, str] = {}
    for run, summary in zip(runs, summaries):
        metric = summary.objective
        if metric is None or metric in notes:
            continue
        first = next((p for p in run.history if any(is_validation_metric(k) for k in p.metrics)), None)
        why = "named by the spec" if objective else choose_objective(first.metrics if first else (), eval_sizes)[1]
        values = [v for _, v in series(run.history, metric, finite=True)]
        found = eval_set(metric, eval_sizes, values)
        size = f" Its evaluation set: {found.describe()}." if found is not None else ""
        noise = (
            " Drops are judged against the binomial noise of a set that size."
            if found is not None and found.size is not None and values and all(0 <= v <= 1 for v in values)
            else " Drops are judged against the run's own evaluation-to-evaluation spread."
        )
        notes[metric] = f"Objective `{metric}`: {why}.{size}{noise}"
    return list(notes.values())


def build_report(
    runs: Sequence[RunInput],
    *,
    objective: str | None = None,
    mode: Mode = "max",
    config: CollapseConfig | None = None,
    eval_sizes: Mapping[str, int] | None = None,
    baseline: Mapping[str, str] | None = None,
    methods: IntervalMethods = DEFAULT_METHODS,
    title: str = "Ablation report",
    on_run: Callable[[str], None] | None = None,
) -> Report:
    """Summarise each run and compute the effects of its factors.

    Args:
        runs: The runs, with their factor levels, seeds, histories and (when recorded) how they stopped.
        objective: The metric to judge every run by; by default each run's own (`objective: auto`, `orchestrator.history.resolve_objective`).
        mode: `max` if a higher objective is better, else `min`.
        config: The collapse rules that judge runs without a recorded verdict (defaults when None).
        eval_sizes: Data source -> problems in its evaluation set (the spec's `objective.eval_sizes`): which set
            `auto` judges by, and how noisy its evaluations are.
        baseline: Factor -> baseline level (see `compute_effects`).
        methods: The interval methods.
        title: The report's title.
        on_run: Called with each run's name before it is judged (for progress).
    """
    config = config if config is not None else CollapseConfig()
    signs = build_signs()
    summaries = []
    notes = []
    for run in runs:
        if on_run is not None:
            on_run(run.run)
        metric = resolve_objective(objective or "auto", run.history, finished=True, eval_sizes=eval_sizes)[0]
        if metric is None:
            notes.append(f"`{run.run}` logged no objective (no validation score, no `critic/score/mean`).")
        rules = build_rules(config, metric, mode, eval_sizes) if metric else []
        summaries.append(summarize_run(run, metric, mode, rules, signs=signs))
    judged_by = objective_notes(runs, summaries, objective, eval_sizes)
    objectives = list(dict.fromkeys(s.objective for s in summaries if s.objective))
    if len(objectives) > 1:
        notes.append(
            f"The runs are judged by {len(objectives)} different objectives ({', '.join(objectives)}): "
            "their best scores are not on one scale. Pass an objective to judge all of them by one metric."
        )
    effects = compute_effects(summaries, mode, baseline=baseline, methods=methods)
    return Report(title, mode, tuple(runs), tuple(summaries), effects, tuple(notes), tuple(judged_by))
