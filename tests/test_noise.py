"""Noise-aware judgement: evaluation-set sizes, the noise of a drop, severe drops and runs that end collapsed.

The simulated runs are binomial evaluations (a set of n problems, each solved with probability p), judged by the
default rules exactly as a live trial judges them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from orchestrator.collapse import (
    CollapseConfig,
    EvalNoise,
    ScoreDropRule,
    ScoreSlideRule,
    build_rules,
    end_verdict,
    first_verdict,
)
from orchestrator.evalsets import eval_set, eval_source, infer_size, known_size
from orchestrator.history import StepMetrics, choose_objective, resolve_objective
from orchestrator.readers import read_run

BANK = Path(__file__).parent / "data" / "bank"
AIME = "val-core/aime24/reward/mean@1"


def _history(values: list[float], metric: str = AIME, every: int = 5) -> list[StepMetrics]:
    return [StepMetrics((i + 1) * every, {metric: float(v)}) for i, v in enumerate(values)]


def _simulate(rng: np.random.Generator, runs: int, n: int, p: np.ndarray) -> list[list[float]]:
    return [list(rng.binomial(n, p) / n) for _ in range(runs)]


# --- evaluation sets ------------------------------------------------------------------------------------------------


def test_the_size_is_inferred_from_the_values_of_a_real_run() -> None:
    run = read_run(BANK / "runs" / "verl-async-reward-agent__q3b_fsdp_base.jsonl")
    metric = "val-core/openai/gsm8k/reward/mean@1"
    values = [p.metrics[metric] for p in run.points if metric in p.metrics]
    # GSM8K's test split: 1319 problems; three values with full precision are enough.
    assert infer_size(values) == 1319
    assert infer_size(values[:3]) == 1319
    assert eval_set(metric, None, values).origin == "inferred"


def test_values_printed_to_three_decimals_say_nothing_of_the_size() -> None:
    run = read_run(BANK / "runs" / "verl-data__gsm8k_qwen2.5-0.5b_ppo_resp512.jsonl")
    values = [p.metrics["val/test_score/openai/gsm8k"] for p in run.points if "val/test_score/openai/gsm8k" in p.metrics]
    assert len(values) > 30
    assert infer_size(values) is None
    # The common benchmark's size stands in.
    found = eval_set("val/test_score/openai/gsm8k", None, values)
    assert (found.size, found.origin) == (1319, "known")


def test_continuous_scores_and_mean_at_k_granularity() -> None:
    rng = np.random.default_rng(0)
    assert all(infer_size(list(rng.random(6))) is None for _ in range(50))
    assert infer_size([2.21, 1.6, 0.43]) is None  # not in [0, 1]
    # mean@16 on 30 problems: multiples of 1/480, and 30 problems.
    assert infer_size([101 / 480, 203 / 480, 307 / 480, 55 / 480], per_problem=16) == 30


def test_the_spec_size_wins_then_the_values_then_the_known_benchmarks() -> None:
    values = [7 / 30, 11 / 30, 13 / 30]
    assert eval_set(AIME, {"aime24": 25}, values).origin == "spec"
    assert (eval_set(AIME, None, values).size, eval_set(AIME, None, values).origin) == (30, "inferred")
    assert (eval_set(AIME, None, [0.5]).size, eval_set(AIME, None, [0.5]).origin) == (30, "known")
    assert eval_set("val-core/mine/reward/mean@1", None, [0.5]).size is None
    assert eval_source("val-core/HuggingFaceH4/MATH-500/reward/mean@4") == "HuggingFaceH4/MATH-500"
    assert known_size("HuggingFaceH4/MATH-500") == 500
    assert eval_source("actor/entropy") is None


def test_auto_takes_the_largest_evaluation_set_and_says_why() -> None:
    keys = ["val-core/aime24/reward/mean@16", "val-core/amc23/reward/mean@16", "val-core/math_500/reward/mean@1"]
    metric, why = choose_objective(keys)
    assert metric == "val-core/math_500/reward/mean@1"
    assert why.startswith("the largest of 3 evaluation sets") and "aime24: 30 problems (known)" in why
    # The spec's sizes rank a set the known sizes do not cover.
    assert choose_objective([*keys, "val-core/mine/reward/mean@1"], {"mine": 2000})[0] == "val-core/mine/reward/mean@1"
    # No size known: the first by name, and the reason says how to do better.
    metric, why = choose_objective(["val-core/b/reward/mean@1", "val-core/a/reward/mean@1"])
    assert metric == "val-core/a/reward/mean@1" and "objective.eval_sizes" in why
    point = StepMetrics(10, dict.fromkeys(keys, 0.3))
    assert resolve_objective("auto", [point])[0] == "val-core/math_500/reward/mean@1"


# --- the noise of a drop --------------------------------------------------------------------------------------------


def test_a_drop_within_the_noise_of_30_problems_is_no_drop() -> None:
    # 0.60 -> 0.43 -> 0.43 loses 28% of the gain: a drop by the threshold alone, noise on 30 problems.
    history = _history([0.5, 0.6, 13 / 30, 13 / 30])
    assert first_verdict(build_rules(CollapseConfig(noise_z=0), AIME, "max"), history) is not None
    assert first_verdict(build_rules(CollapseConfig(), AIME, "max"), history) is None
    # The same fall on 1319 problems is far beyond the noise.
    assert first_verdict(build_rules(CollapseConfig(), AIME, "max", {"aime24": 1319}), history) is not None


def test_the_run_s_own_spread_is_the_noise_when_the_size_is_unknown() -> None:
    metric = "val-core/mine/reward/mean@1"
    steady = [2.0, 2.03, 1.98, 2.02, 1.99, 2.03]
    noise = EvalNoise(metric)
    assert noise.at(steady[:4], 1.9, 2.03) is None  # fewer than 5 earlier evaluations
    found = noise.at(steady, 1.9, 2.03)
    # About 0.02 an evaluation, raised to its 90% upper bound from so few evaluations.
    assert found is not None and found.kind == "spread" and 0.02 < found.sigma < 0.1
    # 2.1 -> 1.5 is a 29% loss of the gain, but within a spread this wide it is no drop...
    wide = [1.9, 2.2, 1.75, 2.1, 1.8, 2.2, 1.7]
    assert first_verdict(build_rules(CollapseConfig(), metric, "max"), _history([*wide, 1.5, 1.5], metric)) is None
    # ...while on a steady run it is.
    assert first_verdict(build_rules(CollapseConfig(), metric, "max"), _history([*steady, 1.5, 1.5], metric)) is not None


def test_healthy_runs_on_30_problems_are_almost_never_stopped() -> None:
    """True accuracy 0.45 on 30 problems, 40 evaluations, 200 runs: at most 1% stopped (the threshold alone: most)."""
    rng = np.random.default_rng(21)
    runs = _simulate(rng, 200, 30, np.full(40, 0.45))
    rules = build_rules(CollapseConfig(), AIME, "max")
    stopped = sum(first_verdict(rules, _history(values)) is not None for values in runs)
    assert stopped <= 2, stopped
    without_noise = build_rules(CollapseConfig(noise_z=0), AIME, "max")
    assert sum(first_verdict(without_noise, _history(values)) is not None for values in runs) > 150


def test_a_collapse_on_30_problems_is_stopped_within_two_evaluations() -> None:
    """0.45 -> 0.05 at evaluation 20 of 40, 200 runs: stopped at the onset or the evaluation after it."""
    rng = np.random.default_rng(22)
    p = np.full(40, 0.45)
    p[20:] = 0.05
    rules = build_rules(CollapseConfig(), AIME, "max")
    latencies = []
    for values in _simulate(rng, 200, 30, p):
        verdict = first_verdict(rules, _history(values))
        latencies.append(None if verdict is None else verdict.step // 5 - 1 - 20)
    within_two = sum(lat is not None and 0 <= lat <= 1 for lat in latencies)
    assert within_two >= 196, latencies  # 98%; the rest within four evaluations
    assert all(lat is not None and lat <= 3 for lat in latencies if lat is None or lat >= 0)


# --- severe drops and the end of a run ------------------------------------------------------------------------------


def test_a_severe_drop_stops_at_once() -> None:
    # 0.85 -> 0.07 on GSM8K-sized evaluations: one evaluation is enough.
    values = [0.5, 0.7, 0.8, 0.85, 0.84, 0.07]
    verdict = first_verdict(build_rules(CollapseConfig(), AIME, "max", {"aime24": 1319}), _history(values))
    assert verdict is not None and verdict.step == 30
    assert verdict.evidence["severe"] is True and verdict.evidence["z"] > 4.5
    assert "severe drop" in verdict.reason and "binomial on 1319 problems (spec)" in verdict.reason
    # Without the noise known there is no severe stop: the rule waits for a second evaluation.
    rule = ScoreDropRule(AIME, noise=None)
    assert rule.check(_history(values)) is None


def test_a_run_that_ends_dropped_is_reported_as_ending_collapsed_unconfirmed() -> None:
    metric = "val-core/openai/gsm8k/reward/mean@1"
    # Beyond noise and threshold, but not severe (40% of the gain) and only once: no live stop.
    values = [0.5, 0.7, 0.8, 0.85, 0.84, 0.51]
    rules = build_rules(CollapseConfig(), metric, "max", {"openai/gsm8k": 1319})
    assert first_verdict(rules, _history(values, metric)) is None
    verdict = end_verdict(rules, _history(values, metric))
    assert verdict is not None and verdict.evidence["confirmed"] is False and verdict.step == 30
    assert "unconfirmed" in verdict.reason
    # One more dropped evaluation confirms it: the live verdict, confirmed.
    confirmed = end_verdict(rules, _history([*values, 0.5], metric))
    assert confirmed is not None and confirmed.evidence["confirmed"] is True and confirmed.step == 35


def test_eval_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="severe_drop"):
        ScoreDropRule(AIME, severe_drop=0.0)
    assert math.isclose(EvalNoise(AIME, {"aime24": 30}).at([], 0.1, 0.5).diff_sigma(0.5, 0.1), math.sqrt(2 * 0.3 * 0.7 / 30))
    assert json.dumps(CollapseConfig().model_dump())  # the new fields serialise (the engine ships the config as JSON)


# --- rounded values, unknown noise, slow slides ---------------------------------------------------------------------


def test_the_size_is_inferred_from_rounded_values_only_when_a_chance_fit_is_unlikely() -> None:
    # Multiples of 1/30 printed to 3 decimals show the set; values spread at random do not fit so small a set.
    assert infer_size([0.433, 0.467, 0.4, 0.367, 0.533]) == 30
    assert infer_size([0.433, 0.467]) is None  # too few values to rule out chance
    assert infer_size([0.612, 0.583, 0.641, 0.597, 0.628]) is None
    # k/500 printed to 3 decimals: any denominator of 1000 fits, so nothing is concluded.
    assert infer_size([0.412, 0.436, 0.458, 0.47, 0.484, 0.49]) is None
    # Never above the true size: a denominator found by chance is smaller, so the noise is overstated.
    rng = np.random.default_rng(5)
    for _ in range(50):
        found = infer_size(list(np.round(rng.binomial(30, 0.45, 12) / 30, 3)))
        assert found is not None and 30 % found == 0


def test_while_the_noise_is_unknown_only_a_severe_drop_counts() -> None:
    metric = "val-core/mine/reward/mean@1"
    # Three evaluations, no size: a 30% fall twice is no stop (it may be noise), a 60% fall twice is.
    assert first_verdict(build_rules(CollapseConfig(), metric, "max"), _history([0.4, 0.44, 0.43, 0.3, 0.3], metric)) is None
    verdict = first_verdict(build_rules(CollapseConfig(), metric, "max"), _history([0.4, 0.44, 0.43, 0.17, 0.15], metric))
    assert verdict is not None and verdict.rule == "score_drop" and verdict.step == 25
    # The limit is the spec's `unknown_noise_drop`; noise_z 0 judges by the threshold alone.
    lenient = CollapseConfig(unknown_noise_drop=0.25)
    assert first_verdict(build_rules(lenient, metric, "max"), _history([0.4, 0.44, 0.43, 0.3, 0.3], metric)) is not None
    assert first_verdict(build_rules(CollapseConfig(noise_z=0), metric, "max"), _history([0.4, 0.44, 0.43, 0.3, 0.3], metric)) is not None
    with pytest.raises(ValueError, match="unknown_noise_drop"):
        CollapseConfig(unknown_noise_drop=0)


def test_the_run_s_spread_from_few_evaluations_is_taken_at_an_upper_bound() -> None:
    metric = "val-core/mine/reward/mean@1"
    steady = [0.45, 0.47, 0.44, 0.46, 0.45, 0.47, 0.44, 0.46, 0.45, 0.47, 0.44, 0.46]
    few, many = EvalNoise(metric).at(steady[:5], 0.3, 0.47), EvalNoise(metric).at(steady, 0.3, 0.47)
    assert few is not None and many is not None and few.kind == many.kind == "spread"
    assert few.sigma > many.sigma  # fewer evaluations, a wider bound
    # One jump (the rise after the evaluation before training) does not widen it.
    jumped = EvalNoise(metric).at([0.1, *steady], 0.3, 0.47)
    assert jumped is not None and jumped.sigma < 1.5 * many.sigma


def test_a_slow_slide_is_stopped_by_score_slide_where_single_evaluations_are_within_the_noise() -> None:
    metric = "val-core/gpqa_diamond/acc/mean@1"
    slide = [0.287, 0.311, 0.306, 0.277, 0.275, 0.244, 0.239, 0.211, 0.21, 0.208, 0.178, 0.17, 0.164]
    sizes = {"gpqa_diamond": 198}
    rules = build_rules(CollapseConfig(), metric, "max", sizes)
    verdict = first_verdict(rules, _history(slide, metric))
    assert verdict is not None and verdict.rule == "score_slide" and verdict.step == 60
    assert verdict.evidence["onset_step"] == 50 and verdict.evidence["z"] >= 4.5 and verdict.evidence["window"] == 3
    assert "averaged" in verdict.reason and "binomial on 198 problems (spec)" in verdict.reason
    without = build_rules(CollapseConfig.model_validate({"score_slide": {"enabled": False}}), metric, "max", sizes)
    assert first_verdict(without, _history(slide, metric)) is None
    # Without a size the slide cannot be told from the noise: the rule does not judge.
    unsized = "val-core/my_subset/acc/mean@1"
    assert ScoreSlideRule(unsized, noise=EvalNoise(unsized)).check(_history(slide, unsized)) is None
    # A healthy run's wiggle on 1319 problems is no slide.
    steady = [0.85, 0.88, 0.87, 0.89, 0.88, 0.86, 0.88, 0.87, 0.89, 0.87, 0.88]
    assert ScoreSlideRule(metric, noise=EvalNoise(metric, {"gpqa_diamond": 1319})).check(_history(steady, metric)) is None


def test_score_slide_is_checked() -> None:
    for bad in ({"window": 0}, {"drop": 1.0}, {"z": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CollapseConfig.model_validate({"score_slide": bad})
