"""One run's summary: best, end, collapse onset, signals before/after, the censoring rules and the JSON shape."""

from __future__ import annotations

import json

import pytest

from orchestrator.collapse import CollapseConfig, Verdict, build_rules
from orchestrator.history import StepMetrics
from orchestrator.report import ASHA_STOP, RunInput, build_report, summarize_run

VAL = "val-core/demo/acc/mean@1"


def _history(collapse_at: int | None, *, peak: float = 0.6, steps: int = 100) -> list[StepMetrics]:
    """A run that learns to `peak` by step 50 (evaluated every 10 steps) and, from `collapse_at`, collapses."""
    points = []
    for step in range(1, steps + 1):
        alive = collapse_at is None or step < collapse_at
        metrics = {
            "actor/pg_loss": 0.2 if alive else 0.0,
            "actor/entropy": 1.0 if alive else 0.05,
            "actor/grad_norm": 2.0 if alive else 0.0,
            "response_length/mean": 400.0 if alive else 12.0,
            "perf/throughput": 1000.0,
        }
        if step % 10 == 0:
            metrics[VAL] = min(peak, peak * step / 50) if alive else 0.02
        points.append(StepMetrics(step, metrics))
    return points


RULES = build_rules(CollapseConfig(), VAL, "max")


def test_summarize_run_of_a_healthy_run() -> None:
    summary = summarize_run(RunInput("ok", _history(None)), VAL, "max", RULES)
    assert (summary.best_step, summary.best_score, summary.final_step) == (50, 0.6, 100)
    assert summary.collapse is None and summary.stop_reason == "completed"
    assert summary.metrics_after == {}
    assert summary.metrics_at_best["actor/entropy"] == 1.0


def test_summarize_run_of_a_collapsed_run() -> None:
    summary = summarize_run(RunInput("bad", _history(65)), VAL, "max", RULES)
    assert summary.collapse is not None
    assert summary.collapse.step == 70  # the first evaluation judged collapsed
    assert summary.stop_reason == f"collapse:{summary.collapse.rule}"
    assert summary.timeline.best == 50 and summary.timeline.last_healthy_eval == 60
    assert summary.timeline.onset == 70 and summary.timeline.dead == 70
    assert summary.metrics_at_best["response_length/mean"] == 400.0
    assert summary.metrics_after["response_length/mean"] == 12.0
    assert summary.change_pct("response_length/mean") == pytest.approx(-97.0)
    assert summary.change_pct("perf/throughput") == 0.0


def test_summarize_run_in_min_mode_picks_the_lowest() -> None:
    history = [StepMetrics(s, {"loss": v}) for s, v in [(1, 3.0), (2, 1.0), (3, 1.0), (4, 2.0)]]
    summary = summarize_run(RunInput("m", history), "loss", "min")
    assert (summary.best_step, summary.best_score) == (2, 1.0)


def test_summarize_run_uses_a_recorded_verdict() -> None:
    verdict = Verdict("non_finite", 33, "NaN", {"onset_step": 33})
    summary = summarize_run(RunInput("r", _history(None), stop_reason="collapse:non_finite", stop_step=33, verdict=verdict), VAL, "max", RULES)
    assert (summary.collapse.step, summary.collapse.rule, summary.stop_reason) == (33, "non_finite", "collapse:non_finite")


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        # A collapsed run's event time is its onset.
        (RunInput("c", _history(65)), (70, True)),
        # A run that ended without collapsing is censored at its last step.
        (RunInput("h", _history(None)), (100, False)),
        # A run stopped by ASHA is censored at its stop step.
        (RunInput("a", _history(None, steps=40), stop_reason=ASHA_STOP, stop_step=40), (40, False)),
        # Even a run whose log goes on past the stop is censored where ASHA stopped it.
        (RunInput("a2", _history(None), stop_reason=ASHA_STOP, stop_step=30), (30, False)),
        # A collapse wins over the stop reason: the event is the onset.
        (RunInput("ac", _history(65), stop_reason=ASHA_STOP, stop_step=90), (70, True)),
    ],
    ids=["collapsed", "completed", "asha", "asha-log-longer", "asha-after-collapse"],
)
def test_survival_time_follows_the_censoring_rules(run: RunInput, expected: tuple[int, bool]) -> None:
    assert summarize_run(run, VAL, "max", RULES).survival_time == expected


def test_asha_stop_is_neither_collapsed_nor_survived_in_the_rate() -> None:
    runs = [
        RunInput("c1", _history(65), {"kl": "0"}, 1),
        RunInput("h1", _history(None), {"kl": "0"}, 2),
        RunInput("a1", _history(None, steps=40), {"kl": "0"}, 3, stop_reason=ASHA_STOP, stop_step=40),
    ]
    group = build_report(runs).effects.by_factor[0].levels[0]
    assert (group.n_runs, group.n_collapsed, group.n_asha, group.n_rate) == (3, 1, 1, 2)
    assert group.collapse_rate.estimate == 0.5
    # The KM curve keeps the ASHA run at risk until step 40, then censors it.
    assert group.survival.steps == (0.0, 40.0, 70.0, 100.0)
    assert group.survival.survival == pytest.approx((1.0, 1.0, 0.5, 0.5))


def test_to_json_has_exactly_the_documented_keys() -> None:
    record = summarize_run(RunInput("bad", _history(65)), VAL, "max", RULES).to_json()
    assert list(record) == ["run", "best_step", "best_score", "final_step", "collapse", "metrics_at_best", "metrics_after"]
    assert set(record["collapse"]) == {"step", "rule", "confirmed", "evidence"}
    assert record["collapse"]["evidence"]["onset_step"] <= record["collapse"]["step"] or record["collapse"]["rule"] != "score_drop"
    json.dumps(record, allow_nan=False)


def test_to_json_replaces_non_finite_numbers() -> None:
    history = [StepMetrics(1, {VAL: 0.5, "actor/pg_loss": float("nan")}), StepMetrics(2, {VAL: 0.4, "actor/pg_loss": 0.1})]
    record = summarize_run(RunInput("n", history), VAL, "max", RULES).to_json()
    json.dumps(record, allow_nan=False)
