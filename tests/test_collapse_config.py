"""Tests of `CollapseConfig` and `build_rules`."""

from __future__ import annotations

import doctest
import pickle
from types import ModuleType

import pytest
from pydantic import ValidationError

from orchestrator.collapse import (
    CollapseConfig,
    DeadRule,
    EntropyRule,
    LengthCollapseRule,
    NonFiniteRule,
    Rule,
    ScoreDropRule,
    ScoreSlideRule,
    build_rules,
    first_verdict,
)
from orchestrator.collapse import _config, _non_finite, _score_drop
from orchestrator.history import StepMetrics
from orchestrator.readers import _tail

OBJECTIVE = "val-core/openai/gsm8k/acc/mean@1"


def test_collapse_config_defaults() -> None:
    config = CollapseConfig()
    assert config.grace_steps == 0
    assert config.baseline == 0.0
    assert config.score_drop.drop == 0.25
    assert config.score_drop.n_evals == 2
    assert config.dead.threshold == 1e-3
    assert config.dead.drop == 0.5
    assert config.dead.n_steps == 3
    assert config.length_collapse.ratio == 0.5
    assert config.non_finite.metrics == ["actor/pg_loss", "actor/grad_norm"]
    assert config.entropy.entropy_metrics == ["actor/entropy", "actor/entropy_loss"]


def test_build_rules_default_builds_every_rule_in_tie_order() -> None:
    rules = build_rules(CollapseConfig(), OBJECTIVE, "max")
    expected = [NonFiniteRule, DeadRule, LengthCollapseRule, ScoreDropRule, ScoreSlideRule, EntropyRule]
    assert [type(rule) for rule in rules] == expected
    assert [rule.name for rule in rules] == ["non_finite", "dead", "length_collapse", "score_drop", "score_slide", "entropy"]
    assert all(isinstance(rule, Rule) for rule in rules)


def test_build_rules_skips_disabled_rules() -> None:
    config = CollapseConfig.model_validate(
        {name: {"enabled": False} for name in ("non_finite", "dead", "length_collapse", "score_slide", "entropy")}
    )
    assert [rule.name for rule in build_rules(config, OBJECTIVE, "min")] == ["score_drop"]


def test_build_rules_passes_thresholds() -> None:
    config = CollapseConfig.model_validate({"score_drop": {"drop": 0.5, "n_evals": 1}, "baseline": "first"})
    rules = build_rules(config, "val", "max")
    history = [StepMetrics(0, {"val": 0.5}), StepMetrics(10, {"val": 1.0}), StepMetrics(20, {"val": 0.76})]
    # Gain over the first evaluation is 0.5; half of it lost is 0.75: 0.76 has not dropped.
    assert all(rule.check(history) is None for rule in rules)
    history.append(StepMetrics(30, {"val": 0.74}))
    verdicts = [rule.check(history) for rule in rules]
    assert [v.rule for v in verdicts if v] == ["score_drop"]


def test_build_rules_non_finite_watches_objective_when_asked() -> None:
    history = [StepMetrics(1, {"val": float("nan")})]
    assert build_rules(CollapseConfig(), "val", "max")[0].check(history) is not None
    config = CollapseConfig.model_validate({"non_finite": {"include_objective": False}})
    assert build_rules(config, "val", "max")[0].check(history) is None


@pytest.mark.parametrize(
    ("data", "location", "message"),
    [
        ({"score_drop": {"drop": 1.5}}, ("score_drop", "drop"),
         "`drop` must be greater than 0 and less than 1 but got 1.5."),
        ({"score_drop": {"n_evals": 0}}, ("score_drop", "n_evals"), "`n_evals` must be at least 1 but got 0."),
        ({"score_drop": {"min_delta": -1}}, ("score_drop", "min_delta"),
         "`min_delta` must be a finite number of at least 0 but got -1."),
        ({"dead": {"threshold": 0}}, ("dead", "threshold"),
         "`threshold` must be a finite number greater than 0 but got 0.0."),
        ({"dead": {"n_steps": 0}}, ("dead", "n_steps"), "`n_steps` must be at least 1 but got 0."),
        ({"length_collapse": {"ratio": 0}}, ("length_collapse", "ratio"),
         "`ratio` must be greater than 0 and less than 1 but got 0.0."),
        ({"length_collapse": {"length_metric": ""}}, ("length_collapse", "length_metric"),
         "`length_metric` must be a non-empty metric name but got ''."),
        ({"entropy": {"window": 0}}, ("entropy", "window"), "`window` must be at least 1 but got 0."),
        ({"entropy": {"explosion_ratio": 0.5}}, ("entropy", "explosion_ratio"),
         "`explosion_ratio` must be a finite number greater than 1 but got 0.5."),
        ({"entropy": {"entropy_metrics": []}}, ("entropy", "entropy_metrics"),
         "`entropy_metrics` must name at least 1 metric but got 0."),
        ({"grace_steps": -1}, ("grace_steps",), "`grace_steps` must be at least 0 but got -1."),
        ({"baseline": float("nan")}, ("baseline",), "`baseline` must be a finite number or 'first' but got nan."),
    ],
)
def test_collapse_config_with_invalid_values(data: dict, location: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        CollapseConfig.model_validate(data)
    (error,) = info.value.errors()
    assert error["loc"] == location
    assert message in error["msg"]


@pytest.mark.parametrize("data", [{"typo": 1}, {"score_drop": {"dorp": 0.3}}, {"entropy": {"window": "five"}}])
def test_collapse_config_rejects_unknown_fields_and_bad_types(data: dict) -> None:
    with pytest.raises(ValidationError):
        CollapseConfig.model_validate(data)


@pytest.mark.parametrize(("objective", "mode"), [("", "max"), ("val", "maximize")])
def test_build_rules_with_invalid_arguments(objective: str, mode: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        build_rules(CollapseConfig(), objective, mode)  # type: ignore[arg-type]


def test_collapse_config_round_trips_through_dump() -> None:
    config = CollapseConfig.model_validate({"baseline": "first", "dead": {"threshold": 1e-4}})
    assert CollapseConfig.model_validate(config.model_dump()) == config


def test_rules_verdicts_and_config_survive_pickling() -> None:
    # Ray ships rules and configs to the trial's worker, and restores trials from pickles.
    config = CollapseConfig.model_validate({"baseline": "first"})
    rules = pickle.loads(pickle.dumps(build_rules(config, "val", "max")))
    history = [StepMetrics(10, {"val": 1.0}), StepMetrics(20, {"val": 2.0}), StepMetrics(30, {"val": 1.0}), StepMetrics(40, {"val": 1.0})]
    verdict = first_verdict(rules, history)
    assert verdict is not None
    assert pickle.loads(pickle.dumps(verdict)) == verdict
    assert pickle.loads(pickle.dumps(history)) == history
    assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize("module", [_config, _non_finite, _score_drop, _tail])
def test_docstring_examples(module: ModuleType) -> None:
    failed, attempted = doctest.testmod(module)
    assert attempted > 0
    assert failed == 0
