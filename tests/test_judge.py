"""The trial judge, without Ray or a store: objective, best, scheduler reports and verdict from points.

The live trial and `ablate replay` both judge through it, so these are the semantics of both.
"""

from __future__ import annotations

import math

import pytest

from orchestrator.collapse import CollapseConfig
from orchestrator.history import StepMetrics, resolve_objective
from orchestrator.judge import Signal, TrialJudge

OBJ = "val-core/mini/reward/mean@1"

# Evals at 0, 5 and 10; the objective turns NaN at 10 (the non-finite rule fires there). Step 7: a training step.
HISTORY = [
    StepMetrics(step=0, metrics={OBJ: 1.0}),
    StepMetrics(step=5, metrics={OBJ: 2.0}),
    StepMetrics(step=7, metrics={"actor/entropy": 0.4}),
    StepMetrics(step=10, metrics={OBJ: math.nan}),
]


@pytest.mark.parametrize("batches", [[4], [1, 3], [2, 2], [1, 1, 1, 1]], ids=["all-at-once", "1+3", "2+2", "one-by-one"])
def test_the_verdict_and_reports_do_not_depend_on_how_points_are_batched(batches: list[int]) -> None:
    judge = TrialJudge(OBJ, "max", CollapseConfig())
    judgements, start = [], 0
    for size in batches:
        judgements.append(judge.take(HISTORY[start : start + size]))
        start += size
    verdicts = [j.verdict for j in judgements if j.verdict is not None]
    assert [(v.rule, v.step) for v in verdicts] == [("non_finite", 10)]
    reports = [r for j in judgements for r in j.reports]
    assert [(r.step, r.score, r.signal, r.best) for r in reports] == [(0, 1.0, 1.0, 1.0), (5, 2.0, 2.0, 2.0)]
    scores = [s for j in judgements for s in j.scores]
    assert scores[:3] == [(0, 1.0), (5, 2.0), (7, None)] and math.isnan(scores[3][1])
    assert judge.best == (5, 2.0) and judge.last_step == 10


def test_best_is_given_only_when_a_batch_improves_it() -> None:
    judge = TrialJudge(OBJ, "min", None)
    assert judge.take([StepMetrics(0, {OBJ: 3.0})]).best == (0, 3.0)
    assert judge.take([StepMetrics(5, {OBJ: 4.0})]).best is None
    assert judge.take([StepMetrics(10, {OBJ: math.nan}), StepMetrics(15, {OBJ: 1.0})]).best == (15, 1.0)
    assert judge.take([]).reports == ()


def test_auto_is_fixed_by_the_first_point_that_logs_a_validation_metric() -> None:
    judge = TrialJudge("auto", "max", CollapseConfig())
    first = judge.take([StepMetrics(0, {"critic/score/mean": 0.3})])
    assert judge.objective is None and first.scores == ((0, None),) and first.reports == ()
    judge.take([StepMetrics(5, {"val-core/b/reward/mean@1": 0.5, "val-core/a/reward/mean@4": 0.4})])
    assert judge.objective == "val-core/a/reward/mean@4"
    # The same resolution serves stored histories (resume, replay, reports).
    points = [StepMetrics(0, {"critic/score/mean": 0.3}), StepMetrics(5, {"val-core/a/reward/mean@4": 0.4})]
    assert resolve_objective("auto", points) == ("val-core/a/reward/mean@4", 1)
    assert resolve_objective("auto", points[:1]) == (None, None)
    assert resolve_objective("my/metric", points) == ("my/metric", 0)


def test_restore_continues_signal_and_best_without_reporting_or_judging() -> None:
    judge = TrialJudge(OBJ, "max", CollapseConfig(), signal="ema", ema_alpha=0.5)
    assert judge.restore([StepMetrics(0, {OBJ: 1.0}), StepMetrics(5, {OBJ: 3.0})]) == ((0, 1.0), (5, 3.0))
    assert judge.best == (5, 3.0)
    (report,) = judge.take([StepMetrics(10, {OBJ: 1.0})]).reports
    # EMA over 1, 3, 1 with alpha 0.5: 2.0 then 1.5; the best so far stays 3.
    assert (report.signal, report.best) == (1.5, 3.0)


def test_signal_skips_non_finite_scores() -> None:
    best, ema = Signal("best", "max", 0.5), Signal("ema", "max", 0.5)
    assert best.update(math.nan) is None and ema.update(math.inf) is None
    assert [best.update(x) for x in (1.0, math.nan, 0.5, 2.0)] == [1.0, 1.0, 1.0, 2.0]
    assert [ema.update(x) for x in (1.0, math.nan, 3.0)] == [1.0, 1.0, 2.0]


@pytest.mark.parametrize("batches", [[1] * 12, [12], [5, 7]])
def test_each_leading_sign_warns_once_however_points_are_batched(batches: list[int]) -> None:
    # Entropy 1.0 for 5 steps, then 0.1: `entropy_fall` after 3 readings below 0.3x (step 8); the score holds.
    points = [
        StepMetrics(step, {"actor/entropy": 1.0 if step <= 5 else 0.1, "val-core/x/reward/mean@1": 0.8})
        for step in range(1, 13)
    ]
    judge = TrialJudge("auto", "max", CollapseConfig())
    warnings, start = [], 0
    for size in batches:
        judgement = judge.take(points[start : start + size])
        warnings += judgement.warnings
        assert judgement.verdict is None
        start += size
    assert [(w.rule, w.step) for w in warnings] == [("entropy_fall", 8)]
    assert TrialJudge("auto", "max", None).take(points).warnings == ()  # collapse rules off: no signs either
