"""Reports that answer the ablation question: which factor prevents collapse, by how much, how sure we are.

The core does not care where runs came from. `ablate analyze` feeds it runs read from log files, `ablate report`
runs from the sweep store:

    runs = [RunInput(run=name, history=points, levels={"kl": "0.01"}, seed=1, stop_reason=None), ...]
    report = build_report(runs, objective=None, mode="max", config=CollapseConfig())
    files = write_report(report, Path("ablate-report"))    # report.md, report.html, PNGs, trials.csv, summary.json
    [summary.to_json() for summary in report.summaries]      # the per-run `--json` records

The interval methods live in `_stats` as small functions and are chosen by `IntervalMethods`. `config_colours`
gives each configuration its colour (Okabe-Ito, colour-blind safe), the same in the report's figures and wherever
else trials are drawn by configuration.
"""

from orchestrator.report._build import Report, build_report
from orchestrator.report._colours import OKABE_ITO, config_colours, config_label
from orchestrator.report._from_store import StoredSweep, SweepReport, baseline_levels, from_store, report_sweep
from orchestrator.report._effects import (
    Comparison,
    Effects,
    FactorEffects,
    GroupStats,
    InteractionTable,
    compute_effects,
    level_order,
    rate_diff_with_asha_bounds,
    rate_with_asha_bounds,
)
from orchestrator.report._render import ReportFiles, report_json, trials_frame, write_report
from orchestrator.report._rescue import BranchResult, RemedyRescue, RescueSummary, ScratchResult, rescue_summary
from orchestrator.report._stats import (
    DEFAULT_METHODS,
    Interval,
    IntervalMethods,
    LogRank,
    Survival,
    bootstrap_mean_ci,
    bootstrap_mean_diff_ci,
    clopper_pearson_ci,
    jeffreys_ci,
    kaplan_meier,
    logrank,
    mid_p_ci,
    newcombe_diff_ci,
    newcombe_exact_diff_ci,
    newcombe_jeffreys_diff_ci,
    newcombe_mid_p_diff_ci,
    seeds_to_separate_means,
    seeds_to_separate_rates,
    t_mean_ci,
    welch_diff_ci,
    wilson_ci,
)
from orchestrator.report._summary import (
    ASHA_STOP,
    COMPLETED,
    SIGNALS,
    Collapse,
    RunInput,
    RunSummary,
    Timeline,
    summarize_run,
)

__all__ = [
    "OKABE_ITO",
    "StoredSweep",
    "SweepReport",
    "baseline_levels",
    "from_store",
    "report_sweep",
    "ASHA_STOP",
    "BranchResult",
    "COMPLETED",
    "DEFAULT_METHODS",
    "SIGNALS",
    "Collapse",
    "Comparison",
    "Effects",
    "FactorEffects",
    "GroupStats",
    "InteractionTable",
    "Interval",
    "IntervalMethods",
    "LogRank",
    "RemedyRescue",
    "Report",
    "ReportFiles",
    "RescueSummary",
    "RunInput",
    "RunSummary",
    "ScratchResult",
    "Survival",
    "Timeline",
    "bootstrap_mean_ci",
    "bootstrap_mean_diff_ci",
    "build_report",
    "clopper_pearson_ci",
    "compute_effects",
    "config_colours",
    "config_label",
    "jeffreys_ci",
    "kaplan_meier",
    "level_order",
    "logrank",
    "mid_p_ci",
    "newcombe_diff_ci",
    "newcombe_exact_diff_ci",
    "newcombe_jeffreys_diff_ci",
    "newcombe_mid_p_diff_ci",
    "rate_diff_with_asha_bounds",
    "rate_with_asha_bounds",
    "report_json",
    "rescue_summary",
    "seeds_to_separate_means",
    "seeds_to_separate_rates",
    "summarize_run",
    "t_mean_ci",
    "trials_frame",
    "welch_diff_ci",
    "wilson_ci",
    "write_report",
]
