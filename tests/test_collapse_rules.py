"""Tests of each collapse rule on short hand-written histories, replayed one step at a time."""

from __future__ import annotations

import math

import pytest

from orchestrator.collapse import (
    DeadRule,
    EntropyRule,
    LengthCollapseRule,
    NonFiniteRule,
    Rule,
    ScoreDropRule,
    Verdict,
    collect_warnings,
    first_verdict,
)
from orchestrator.history import History, StepMetrics

NAN, INF = math.nan, math.inf
VAL = "val"


def evals(*values: float, every: int = 10, start: int = 10) -> list[StepMetrics]:
    """Return one evaluation of `val` every `every` steps."""
    return [StepMetrics(start + i * every, {VAL: value}) for i, value in enumerate(values)]


def replay(rule: Rule, history: History) -> Verdict | None:
    """Check the rule after each step, as a live trial does, and return the first verdict.

    Asserts that the rule is silent before its firing step and that every longer history gives the same verdict.
    """
    first: Verdict | None = None
    for i, point in enumerate(history):
        verdict = rule.check(history[: i + 1])
        if first is None:
            assert verdict is None or verdict.step == point.step, "a rule must fire at the step it is checked on"
            first = verdict
        else:
            assert verdict == first, "a verdict must not change once given"
    return first


def fired_at(rule: Rule, history: History) -> int | None:
    verdict = replay(rule, history)
    return None if verdict is None else verdict.step


# --- ScoreDropRule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "kwargs", "step"),
    [
        # Two evaluations below 0.75 x best in a row.
        ((0.5, 1.0, 0.7, 0.7), {}, 40),
        # Near miss: just above 0.75 x best.
        ((0.5, 1.0, 0.76, 0.76, 0.76), {}, None),
        # Single dips between recoveries are not a streak.
        ((1.0, 0.5, 0.9, 0.5, 0.9, 0.5), {}, None),
        # A recovery resets the streak.
        ((1.0, 0.7, 0.8, 0.7, 0.7), {}, 50),
        # A new best raises the threshold.
        ((0.6, 0.5, 1.0, 0.7, 0.7), {}, 50),
        # Exactly at the threshold is not below it.
        ((1.0, 0.75, 0.75), {}, None),
        # One evaluation is enough with n_evals=1.
        ((1.0, 0.7), {"n_evals": 1}, 20),
        # A bigger drop is asked for.
        ((1.0, 0.6, 0.6), {"drop": 0.5}, None),
        ((1.0, 0.4, 0.4), {"drop": 0.5}, 30),
        # Three in a row asked for.
        ((1.0, 0.7, 0.7, 0.9, 0.7, 0.7, 0.7), {"n_evals": 3}, 70),
        # Evaluations inside the warm-up are not judged, but they set the best.
        ((1.0, 0.5, 0.5), {"grace_steps": 30}, None),
        ((1.0, 0.5, 0.5, 0.5), {"grace_steps": 30}, 40),
        # A score that never rose above 0 has nothing to lose.
        ((0.0, 0.0, 0.0), {}, None),
        # Measured from the first evaluation, a smaller fall counts.
        ((0.5, 1.0, 0.8, 0.8), {"baseline": "first"}, 40),
        ((0.5, 1.0, 0.8, 0.8), {}, None),
        # Negative scores: the gain is |best - 0|, so -0.55 is past -0.4 - 0.25 x 0.4 = -0.5.
        ((-1.0, -0.4, -0.45, -0.55, -0.55), {}, 50),
        ((-1.0, -0.4, -0.45, -0.49, -0.49), {}, None),
        # Negative scores measured from their worst value -1: the gain is 0.6, the threshold -0.55.
        ((-1.0, -0.4, -0.56, -0.56), {"baseline": -1.0}, 40),
        ((-1.0, -0.4, -0.54, -0.54), {"baseline": -1.0}, None),
        # Scores near 0: an absolute floor on the drop keeps noise from firing.
        ((0.01, 0.004, 0.004), {}, 30),
        ((0.01, 0.004, 0.004), {"min_delta": 0.01}, None),
        # NaN evaluations are skipped (NonFiniteRule stops on them); they do not break a streak.
        ((1.0, 0.7, NAN, 0.7), {}, 40),
        ((1.0, NAN, NAN), {}, None),
    ],
)
def test_score_drop_rule_max(values: tuple[float, ...], kwargs: dict, step: int | None) -> None:
    assert fired_at(ScoreDropRule(VAL, "max", **kwargs), evals(*values)) == step


@pytest.mark.parametrize(
    ("values", "kwargs", "step"),
    [
        # Lower is better: 1.25 x best is the limit.
        ((1.0, 0.5, 0.6, 0.7, 0.7), {}, 50),
        ((1.0, 0.5, 0.62, 0.62, 0.62), {}, None),
        ((1.0, 0.5, 0.4, 0.45, 0.45), {}, None),
        # Measured from the first evaluation: gain 0.5, limit 0.5 + 0.125.
        ((1.0, 0.5, 0.63, 0.63), {"baseline": "first"}, 40),
        # Negative losses: best -1.0, limit -0.75.
        ((-0.5, -1.0, -0.7, -0.7), {}, 40),
    ],
)
def test_score_drop_rule_min(values: tuple[float, ...], kwargs: dict, step: int | None) -> None:
    assert fired_at(ScoreDropRule(VAL, "min", **kwargs), evals(*values)) == step


def test_score_drop_rule_ignores_steps_without_evaluation() -> None:
    scores = [1.0] * 19 + [0.5] * 11
    history = [
        StepMetrics(step, {"actor/entropy": 0.3} | ({VAL: score} if step % 5 == 0 else {}))
        for step, score in zip(range(1, 31), scores)
    ]
    # Evaluations at 5..30: 1.0 up to 15, 0.5 from 20.
    assert fired_at(ScoreDropRule(VAL), history) == 25


def test_score_drop_rule_evidence() -> None:
    verdict = ScoreDropRule(VAL).check(evals(0.5, 2.0, 1.2, 1.0))
    assert verdict is not None
    assert verdict.rule == "score_drop"
    assert verdict.step == 40
    assert verdict.evidence["onset_step"] == 30
    assert verdict.evidence["best"] == 2.0
    assert verdict.evidence["best_step"] == 20
    assert verdict.evidence["threshold"] == pytest.approx(1.5)
    assert verdict.evidence["evals"] == [[30, 1.2], [40, 1.0]]
    assert verdict.evidence["score"] == 1.0
    assert "`val` was 1 at step 40" in verdict.reason
    assert "best 2 at step 20" in verdict.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximize"}, "`mode` must be one of ['max', 'min'] but got 'maximize'."),
        ({"drop": 0.0}, "`drop` must be greater than 0 and less than 1 but got 0.0."),
        ({"drop": 1.0}, "`drop` must be greater than 0 and less than 1 but got 1.0."),
        ({"n_evals": 0}, "`n_evals` must be at least 1 but got 0."),
        ({"grace_steps": -1}, "`grace_steps` must be at least 0 but got -1."),
        ({"baseline": "last"}, "`baseline` must be a finite number or 'first' but got 'last'."),
        ({"min_delta": NAN}, "`min_delta` must be a finite number of at least 0 but got nan."),
        ({"metric": ""}, "`metric` must be a non-empty metric name but got ''."),
    ],
)
def test_score_drop_rule_with_invalid_inputs(kwargs: dict, message: str) -> None:
    arguments = {"metric": VAL} | kwargs
    with pytest.raises(ValueError) as info:
        ScoreDropRule(**arguments)
    assert str(info.value) == message


# --- NonFiniteRule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metrics", "step"),
    [
        ({"actor/pg_loss": NAN}, 3),
        ({"actor/grad_norm": INF}, 3),
        ({"actor/grad_norm": -INF}, 3),
        ({VAL: NAN}, 3),
        # Metrics it does not watch.
        ({"actor/entropy": NAN}, None),
        ({"perf/mfu/actor": INF}, None),
        # Large but finite.
        ({"actor/grad_norm": 1e30}, None),
    ],
)
def test_non_finite_rule_with_nan(metrics: dict[str, float], step: int | None) -> None:
    healthy = {"actor/pg_loss": 0.01, "actor/grad_norm": 0.2}
    history = [StepMetrics(1, healthy), StepMetrics(2, healthy | {VAL: 0.5}), StepMetrics(3, healthy | metrics), StepMetrics(4, healthy)]
    assert fired_at(NonFiniteRule(objective=VAL), history) == step


def test_non_finite_rule_skips_metrics_not_logged() -> None:
    history = [StepMetrics(1, {}), StepMetrics(2, {"other": 1.0})]
    assert fired_at(NonFiniteRule(objective=VAL), history) is None


def test_non_finite_rule_evidence_and_custom_metrics() -> None:
    rule = NonFiniteRule(metrics=["critic/vf_loss"])
    verdict = rule.check([StepMetrics(7, {"critic/vf_loss": INF, "actor/pg_loss": NAN})])
    evidence = {"metric": "critic/vf_loss", "value": "inf", "onset_step": 7}
    assert verdict == Verdict("non_finite", 7, "`critic/vf_loss` was inf at step 7.", evidence)


# --- DeadRule --------------------------------------------------------------------------------------------------


def dead_history(grad_norms: list[float], scores: dict[int, float], *, start: int = 1) -> list[StepMetrics]:
    """Return one point per grad norm from `start`, with evaluations of `val` at the given steps."""
    return [
        StepMetrics(step, {"actor/grad_norm": norm, "actor/pg_loss": 0.0} | ({VAL: scores[step]} if step in scores else {}))
        for step, norm in enumerate(grad_norms, start=start)
    ]


@pytest.mark.parametrize(
    ("grad_norms", "scores", "step"),
    [
        # Dead from step 5 with the score below half its best.
        ([0.2, 0.1, 0.05, 0.01, 0.0, 0.0, 0.0, 0.0], {2: 2.8, 4: 1.2}, 7),
        # Three dead steps, but the score held above half its best.
        ([0.2, 0.1, 0.05, 0.01, 0.0, 0.0, 0.0, 0.0], {2: 2.8, 4: 1.5}, None),
        # The score fell, but the gradient never got below the threshold.
        ([0.2, 0.1, 0.05, 0.01, 0.002, 0.002, 0.002, 0.002], {2: 2.8, 4: 1.2}, None),
        # At the threshold counts as dead.
        ([0.2, 0.1, 0.05, 0.01, 0.001, 0.001, 0.001], {2: 2.8, 4: 1.2}, 7),
        # An interruption resets the count.
        ([0.2, 0.1, 0.05, 0.01, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0], {2: 2.8, 4: 1.2}, 10),
        # No evaluation yet: not judged.
        ([0.0, 0.0, 0.0, 0.0], {}, None),
        # The score drops later than the gradient dies: counted from the evaluation.
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], {1: 2.8, 5: 1.0}, 7),
        # NaN grad norms are skipped (NonFiniteRule's job).
        ([0.2, 0.1, 0.0, NAN, 0.0, 0.0], {1: 2.8, 2: 1.0}, 6),
    ],
)
def test_dead_rule(grad_norms: list[float], scores: dict[int, float], step: int | None) -> None:
    assert fired_at(DeadRule(VAL), dead_history(grad_norms, scores)) == step


def test_dead_rule_mode_min() -> None:
    history = dead_history([0.2, 0.0, 0.0, 0.0], {1: 1.0, 2: 1.6})
    assert fired_at(DeadRule(VAL, "min"), history) == 4
    history = dead_history([0.2, 0.0, 0.0, 0.0], {1: 1.0, 2: 1.4})
    assert fired_at(DeadRule(VAL, "min"), history) is None


def test_dead_rule_evidence() -> None:
    verdict = DeadRule(VAL, n_steps=2).check(dead_history([0.1, 0.0, 0.0], {1: 3.0, 2: 1.0}))
    assert verdict is not None
    assert (verdict.rule, verdict.step) == ("dead", 3)
    assert verdict.evidence["onset_step"] == 2
    assert verdict.evidence["grad_norms"] == [[2, 0.0], [3, 0.0]]
    assert verdict.evidence["threshold"] == pytest.approx(1.5)
    assert verdict.evidence["score"] == 1.0


# --- LengthCollapseRule ----------------------------------------------------------------------------------------


def length_history(lengths: list[float], scores: dict[int, float]) -> list[StepMetrics]:
    return [
        StepMetrics(step, {"response_length/mean": length} | ({VAL: scores[step]} if step in scores else {}))
        for step, length in enumerate(lengths, start=1)
    ]


@pytest.mark.parametrize(
    ("lengths", "scores", "kwargs", "step"),
    [
        # Length under half its maximum for two steps while the score dropped.
        ([100, 300, 280, 140, 120, 100], {2: 2.0, 4: 1.2}, {}, 5),
        # Healthy shortening: the score rises while responses get short.
        ([300, 250, 200, 140, 120, 100], {2: 1.0, 4: 1.5, 6: 1.6}, {}, None),
        # The score dropped but the length held above half.
        ([100, 300, 280, 160, 155, 150], {2: 2.0, 4: 1.2}, {}, None),
        # A single short step.
        ([100, 300, 280, 140, 200, 200], {2: 2.0, 4: 1.2}, {}, None),
        # One short step is enough with n_steps=1.
        ([100, 300, 280, 140], {2: 2.0, 4: 1.2}, {"n_steps": 1}, 4),
        # Inside the warm-up.
        ([100, 300, 280, 140, 120, 100], {2: 2.0, 4: 1.2}, {"grace_steps": 6}, None),
        # Missing and NaN lengths are skipped.
        ([100, 300, 280, 140, NAN, 120], {2: 2.0, 4: 1.2}, {}, 6),
    ],
)
def test_length_collapse_rule(lengths: list[float], scores: dict[int, float], kwargs: dict, step: int | None) -> None:
    assert fired_at(LengthCollapseRule(VAL, **kwargs), length_history(lengths, scores)) == step


def test_length_collapse_rule_evidence() -> None:
    verdict = LengthCollapseRule(VAL).check(length_history([100, 300, 280, 140, 120], {2: 2.0, 4: 1.2}))
    assert verdict is not None
    assert (verdict.rule, verdict.step) == ("length_collapse", 5)
    assert verdict.evidence["onset_step"] == 4
    assert verdict.evidence["max_length"] == 300
    assert verdict.evidence["length"] == 120
    assert verdict.evidence["lengths"] == [[4, 140], [5, 120]]


# --- EntropyRule -----------------------------------------------------------------------------------------------


def entropy_history(entropies: list[float], scores: dict[int, float], metric: str = "actor/entropy") -> list[StepMetrics]:
    return [
        StepMetrics(step, {metric: entropy} | ({VAL: scores[step]} if step in scores else {}))
        for step, entropy in enumerate(entropies, start=1)
    ]


EARLY = [0.4, 0.4, 0.4, 0.4, 0.4]


@pytest.mark.parametrize(
    ("entropies", "scores", "check_step", "warn_step"),
    [
        # Collapse below 5% of the early level, with the score down: stop.
        (EARLY + [0.1, 0.01, 0.01, 0.01], {5: 2.0, 7: 1.0}, 9, 9),
        # Explosion above 3x, with the score down: stop.
        (EARLY + [0.8, 1.3, 1.4, 1.5], {5: 2.0, 7: 1.0}, 9, 9),
        # Collapse while the score holds: a warning only.
        (EARLY + [0.1, 0.01, 0.01, 0.01], {5: 2.0, 7: 1.9}, None, 9),
        # The score drops after the entropy streak began: the stop waits for three steps on a dropped score.
        (EARLY + [0.01, 0.01, 0.01, 0.01, 0.01, 0.01], {5: 2.0, 9: 1.0}, 11, 8),
        # A healthy 85% fall: nothing.
        (EARLY + [0.2, 0.1, 0.06, 0.06, 0.06], {5: 2.0, 7: 1.0}, None, None),
        # Two anomalous steps are not three.
        (EARLY + [0.01, 0.01, 0.3, 0.01, 0.01], {5: 2.0, 7: 1.0}, None, None),
        # Too few values to know the early level.
        ([0.4, 0.01, 0.01, 0.01], {1: 2.0, 2: 1.0}, None, None),
    ],
)
def test_entropy_rule(
    entropies: list[float], scores: dict[int, float], check_step: int | None, warn_step: int | None
) -> None:
    rule = EntropyRule(VAL)
    history = entropy_history(entropies, scores)
    assert fired_at(rule, history) == check_step
    warning = rule.warn(history)
    assert (warning.step if warning else None) == warn_step


def test_entropy_rule_falls_back_to_old_entropy_metric() -> None:
    history = entropy_history(EARLY + [0.01, 0.01, 0.01], {5: 2.0, 6: 1.0}, metric="actor/entropy_loss")
    verdict = EntropyRule(VAL).check(history)
    assert verdict is not None
    assert verdict.evidence["entropy_metric"] == "actor/entropy_loss"
    assert verdict.evidence["kind"] == "collapse"
    assert verdict.evidence["early_level"] == pytest.approx(0.4)
    assert verdict.evidence["onset_step"] == 6


def test_entropy_rule_without_entropy_or_with_zero_early_level() -> None:
    assert EntropyRule(VAL).check(evals(2.0, 1.0, 1.0)) is None
    assert EntropyRule(VAL).warn(entropy_history([0.0] * 5 + [1.0] * 3, {1: 1.0})) is None


# --- first_verdict and collect_warnings ------------------------------------------------------------------------


def test_first_verdict_returns_the_earliest_and_first_listed_on_ties() -> None:
    history = [
        StepMetrics(1, {VAL: 2.0, "actor/grad_norm": 0.1}),
        StepMetrics(2, {VAL: 0.9, "actor/grad_norm": 0.0}),
        StepMetrics(3, {VAL: 0.9, "actor/grad_norm": 0.0}),
        StepMetrics(4, {"actor/grad_norm": NAN}),
    ]
    score_drop, dead, non_finite = ScoreDropRule(VAL), DeadRule(VAL, n_steps=2), NonFiniteRule(objective=VAL)
    assert first_verdict([non_finite], history).step == 4  # type: ignore[union-attr]
    assert first_verdict([non_finite, score_drop, dead], history).rule == "score_drop"  # type: ignore[union-attr]
    assert first_verdict([dead, score_drop], history).rule == "dead"  # type: ignore[union-attr]
    assert first_verdict([], history) is None
    assert first_verdict([score_drop, dead], history[:2]) is None


def test_collect_warnings_only_from_rules_that_warn() -> None:
    history = entropy_history(EARLY + [0.01, 0.01, 0.01], {5: 2.0})
    rules: list[Rule] = [ScoreDropRule(VAL), EntropyRule(VAL)]
    warnings = collect_warnings(rules, history)
    assert [(w.rule, w.step) for w in warnings] == [("entropy", 8)]
    assert first_verdict(rules, history) is None


def test_rules_are_silent_on_an_empty_history() -> None:
    rules: list[Rule] = [NonFiniteRule(), ScoreDropRule(VAL), DeadRule(VAL), LengthCollapseRule(VAL), EntropyRule(VAL)]
    assert first_verdict(rules, []) is None
    assert collect_warnings(rules, []) == []
