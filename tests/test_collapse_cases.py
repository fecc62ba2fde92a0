"""The default rules on whole runs: the collapse seen in the field, a miniature collapse, and near misses."""

from __future__ import annotations

import pytest

from orchestrator.collapse import CollapseConfig, ScoreDropRule, build_rules, collect_warnings, first_verdict
from orchestrator.history import StepMetrics

OBJECTIVE = "val-core/math/acc/mean@4"


def interpolate(knots: dict[int, float], step: int) -> float:
    """Return the piecewise-linear value through `knots` at `step` (flat beyond the last knot)."""
    steps = sorted(knots)
    if step >= steps[-1]:
        return knots[steps[-1]]
    right = next(s for s in steps if s >= step)
    left = max(s for s in steps if s <= step)
    if left == right:
        return knots[left]
    return knots[left] + (knots[right] - knots[left]) * (step - left) / (right - left)


# The field case: validation every 5 steps peaks at 2.21 (step 75), holds near it, then 1.60 at 135, 0.43 at 140
# and 0.00 from 150; entropy 0.18 -> 0.12, response length 2960 -> 315, grad norm and PG loss -> 0.
FIELD_SCORES = {0: 0.9, 25: 1.7, 50: 2.05, 75: 2.21, 100: 2.1, 130: 2.0, 135: 1.60, 140: 0.43, 145: 0.1, 150: 0.0}
FIELD_LENGTHS = {1: 1500, 75: 2960, 130: 2700, 135: 1800, 140: 900, 150: 315}
FIELD_ENTROPY = {1: 0.35, 75: 0.18, 130: 0.16, 140: 0.12}
FIELD_GRAD_NORM = {1: 0.30, 75: 0.12, 130: 0.10, 140: 0.05, 145: 0.01, 150: 0.0}


def field_case(last_step: int = 200) -> list[StepMetrics]:
    points = [StepMetrics(0, {OBJECTIVE: FIELD_SCORES[0]})]
    for step in range(1, last_step + 1):
        metrics = {
            "actor/entropy": interpolate(FIELD_ENTROPY, step),
            "response_length/mean": interpolate(FIELD_LENGTHS, step),
            "actor/grad_norm": interpolate(FIELD_GRAD_NORM, step),
            "actor/pg_loss": 0.0 if step >= 150 else 0.01 * (-1) ** step,
            "critic/score/mean": interpolate(FIELD_SCORES, step),
        }
        if step % 5 == 0:
            metrics[OBJECTIVE] = round(interpolate(FIELD_SCORES, step), 2)
        points.append(StepMetrics(step, metrics))
    return points


def first_stop_step(history: list[StepMetrics], config: CollapseConfig | None = None) -> tuple[int, str] | None:
    """Replay the default rules one step at a time, as the engine does, and return (step, rule) of the stop."""
    rules = build_rules(config or CollapseConfig(), OBJECTIVE, "max")
    for i in range(len(history)):
        verdict = first_verdict(rules, history[: i + 1])
        if verdict is not None:
            assert verdict.step == history[i].step
            return verdict.step, verdict.rule
    return None


def test_default_rules_stop_the_field_collapse_within_two_evals_of_its_fall() -> None:
    history = field_case()
    stop = first_stop_step(history)
    assert stop is not None
    step, _ = stop
    # Not before the first collapsed evaluation (135), and at most two evaluations after the 0.43 at step 140.
    assert 135 <= step <= 150


def test_score_drop_rule_on_the_field_collapse() -> None:
    verdict = ScoreDropRule(OBJECTIVE).check(field_case())
    assert verdict is not None
    assert verdict.step == 140
    assert verdict.evidence["onset_step"] == 135
    assert verdict.evidence["best"] == 2.21
    assert verdict.evidence["best_step"] == 75


@pytest.mark.parametrize("rule", ["score_drop", "length_collapse", "dead"])
def test_each_rule_alone_stops_the_field_collapse(rule: str) -> None:
    others = {name: {"enabled": False} for name in ("non_finite", "score_drop", "score_slide", "dead", "length_collapse", "entropy")}
    config = CollapseConfig.model_validate(others | {rule: {"enabled": True}})
    stop = first_stop_step(field_case(), config)
    assert stop is not None
    assert stop[1] == rule
    # The dead state follows the collapse: grad norm is 0 from step 150.
    assert 135 <= stop[0] <= (152 if rule == "dead" else 150)


def test_default_rules_do_not_stop_the_field_run_before_its_collapse() -> None:
    assert first_stop_step(field_case(last_step=134)) is None
    assert collect_warnings(build_rules(CollapseConfig(), OBJECTIVE, "max"), field_case(last_step=134)) == []


# A miniature collapse (shared/notes/minigrpo.md): evaluations every 10 steps, best 2.79 at step 20, dead from 70
# at ~1.16 with grad norm 0.000, length 7.5 -> 3.
MINI_SCORES = {10: 2.72, 20: 2.79, 30: 2.73, 40: 2.26, 50: 1.69, 60: 1.30, 70: 1.16}
MINI_LENGTHS = {1: 7.5, 30: 7.4, 40: 6.0, 50: 4.5, 60: 3.6, 70: 3.0}
MINI_GRAD_NORM = {1: 0.14, 40: 0.10, 60: 0.02, 70: 0.0}


def mini_case() -> list[StepMetrics]:
    points = []
    for step in range(1, 251):
        metrics = {
            "actor/entropy": interpolate({1: 0.5, 30: 0.3, 70: 0.02}, step),
            "response_length/mean": interpolate(MINI_LENGTHS, step),
            "actor/grad_norm": interpolate(MINI_GRAD_NORM, step),
            "actor/pg_loss": 0.0,
        }
        if step % 10 == 0:
            metrics[OBJECTIVE] = interpolate(MINI_SCORES, step)
        points.append(StepMetrics(step, metrics))
    return points


def test_default_rules_stop_a_miniature_collapse_within_two_evals_of_its_onset() -> None:
    history = mini_case()
    stop = first_stop_step(history)
    assert stop is not None
    # 1.69 at step 50 is the first evaluation below 0.75 x 2.79.
    assert 50 <= stop[0] <= 70


@pytest.mark.parametrize(
    "scores",
    [
        # A plateau with noise of +-10%.
        {10: 2.0, 20: 2.2, 30: 1.98, 40: 2.25, 50: 2.03, 60: 2.2, 70: 2.05},
        # A slow decline to 80% of the best.
        {10: 2.0, 20: 2.5, 30: 2.4, 40: 2.3, 50: 2.2, 60: 2.1, 70: 2.01},
        # A single bad evaluation.
        {10: 2.0, 20: 2.5, 30: 1.0, 40: 2.4, 50: 2.45, 60: 2.5, 70: 2.5},
    ],
)
def test_default_rules_spare_near_misses(scores: dict[int, float]) -> None:
    # A healthy run that sheds 80% of its entropy and 40% of its length, grad norm falling 5x.
    points = []
    for step in range(1, 71):
        metrics = {
            "actor/entropy": interpolate({1: 0.4, 70: 0.08}, step),
            "response_length/mean": interpolate({1: 500, 70: 300}, step),
            "actor/grad_norm": interpolate({1: 0.5, 70: 0.1}, step),
            "actor/pg_loss": 0.01,
        }
        if step in scores:
            metrics[OBJECTIVE] = scores[step]
        points.append(StepMetrics(step, metrics))
    assert first_stop_step(points) is None
    assert collect_warnings(build_rules(CollapseConfig(), OBJECTIVE, "max"), points) == []
