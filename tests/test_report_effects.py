"""Per-factor effects on hand-made runs: a factor that clearly helps, one that does not, designs, grids."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from orchestrator.history import StepMetrics
from orchestrator.report import (
    ASHA_STOP,
    DEFAULT_METHODS,
    IntervalMethods,
    RunInput,
    bootstrap_mean_ci,
    build_report,
    level_order,
    mid_p_ci,
    newcombe_mid_p_diff_ci,
    rate_with_asha_bounds,
    report_json,
    seeds_to_separate_means,
    write_report,
)

VAL = "val-core/demo/acc/mean@1"


def _history(collapse_at: int | None, peak: float, steps: int = 100) -> list[StepMetrics]:
    points = []
    for step in range(1, steps + 1):
        alive = collapse_at is None or step < collapse_at
        metrics = {"actor/grad_norm": 2.0 if alive else 0.0, "response_length/mean": 400.0 if alive else 12.0}
        if step % 10 == 0:
            metrics[VAL] = min(peak, peak * step / 50) if alive else 0.02
        points.append(StepMetrics(step, metrics))
    return points


# One factor at a time around kl=0, ent=0: kl=0.01 prevents the collapse, ent=0.001 changes nothing.
OAT = [
    *(RunInput(f"kl0_ent0_s{s}", _history(c, p), {"kl": "0", "ent": "0"}, s) for s, c, p in [(1, 55, 0.60), (2, 65, 0.62), (3, 75, 0.61)]),
    *(RunInput(f"kl0.01_ent0_s{s}", _history(None, p), {"kl": "0.01", "ent": "0"}, s) for s, p in [(1, 0.70), (2, 0.72), (3, 0.71)]),
    *(RunInput(f"kl0_ent0.001_s{s}", _history(c, p), {"kl": "0", "ent": "0.001"}, s) for s, c, p in [(1, 65, 0.63), (2, None, 0.59), (3, 85, 0.60)]),
]


def test_effects_of_a_one_at_a_time_design() -> None:
    effects = build_report(OAT).effects
    assert effects.design == "one_at_a_time"
    assert effects.baseline == {"kl": "0", "ent": "0"}
    kl, ent = effects.by_factor
    assert [g.levels["kl"] for g in kl.levels] == ["0", "0.01"]
    # Each factor rests on the runs at the other's baseline.
    assert [g.n_runs for g in kl.levels] == [3, 3] and [g.n_runs for g in ent.levels] == [3, 3]
    assert [g.n_collapsed for g in kl.levels] == [3, 0]
    assert kl.levels[0].survival.median_steps == 70
    assert kl.levels[1].survival.median_steps is None


def test_effects_state_a_clear_effect_with_intervals() -> None:
    kl = build_report(OAT).effects.by_factor[0]
    (comparison,) = kl.comparisons
    assert (comparison.level, comparison.baseline) == ("0.01", "0")
    assert comparison.collapse_rate_diff.estimate == -1.0 and comparison.collapse_rate_diff.high < 0
    assert comparison.best_score_diff.estimate == pytest.approx(0.10)
    assert comparison.best_score_diff.low > 0
    assert kl.logrank.p_value < 0.05


def test_effects_warn_when_the_data_cannot_tell_levels_apart() -> None:
    warnings = build_report(OAT).effects.warnings
    assert not any("`kl`" in w for w in warnings)
    ent = [w for w in warnings if "`ent`=0.001" in w]
    assert len(ent) == 2
    assert any("on the best score" in w and "overlap" in w and "includes 0" in w for w in ent)
    assert any("on the collapse rate" in w and "[-" in w for w in ent)


def test_effects_pick_the_configuration_that_does_not_collapse() -> None:
    best = build_report(OAT).effects.best
    assert best.label == "kl=0.01, ent=0" and best.collapse_rate.estimate == 0.0


def test_effects_of_a_grid_have_main_effects_and_an_interaction_table() -> None:
    runs = [
        RunInput(f"lr{lr}_kl{kl}_s{s}", _history(None if kl == "0.01" else 60 + 10 * s, 0.6 + (0.05 if lr == "cos" else 0)), {"lr": lr, "kl": kl}, s)
        for lr in ("const", "cos")
        for kl in ("0", "0.01")
        for s in (1, 2)
    ]
    effects = build_report(runs).effects
    assert effects.design == "grid"
    lr, kl = effects.by_factor
    assert [g.n_runs for g in kl.levels] == [4, 4]  # averaged over lr
    assert [g.collapse_rate.estimate for g in kl.levels] == [1.0, 0.0]
    (table,) = effects.interactions
    assert table.factors == ("lr", "kl")
    assert table.cells[("cos", "0.01")].n_runs == 2
    assert table.cells[("cos", "0")].n_collapsed == 2
    assert table.cells[("const", "0.01")].best_score.estimate == pytest.approx(0.6)


def test_effects_of_runs_without_levels_are_empty() -> None:
    effects = build_report([RunInput("a", _history(None, 0.5)), RunInput("b", _history(60, 0.5))]).effects
    assert (effects.design, effects.by_factor, effects.warnings) == ("none", (), ())


def test_effects_with_one_seed_per_level_say_there_is_no_interval() -> None:
    runs = [RunInput("a", _history(None, 0.5), {"group": "a"}), RunInput("b", _history(60, 0.4), {"group": "b"})]
    effects = build_report(runs).effects
    assert effects.design == "single"
    (comparison,) = effects.by_factor[0].comparisons
    assert comparison.best_score_diff.note == "a group has fewer than 2 values"
    assert any("(none: a group has fewer than 2 values)" in w for w in effects.warnings)


def test_effects_use_the_given_interval_methods() -> None:
    effects = build_report(OAT, methods=IntervalMethods(mean=bootstrap_mean_ci)).effects
    assert effects.by_factor[0].levels[0].best_score.method == "bootstrap-bca"
    assert build_report(OAT).effects.by_factor[0].levels[0].best_score.method == "t"


@pytest.mark.parametrize(
    ("levels", "expected"),
    [(["0.1", "0", "0.01"], ["0", "0.01", "0.1"]), (["cos", "const", "cos"], ["const", "cos"]), (["8", "16"], ["8", "16"])],
)
def test_level_order_is_numeric_when_it_can_be(levels: list[str], expected: list[str]) -> None:
    assert level_order(levels) == expected


def test_warnings_give_the_seeds_that_would_separate_the_levels() -> None:
    effects = build_report(OAT).effects
    ent = effects.by_factor[1]
    (comparison,) = ent.comparisons
    # Best scores: ent=0.001 peaks 0.63, 0.59, 0.60 against the baseline's 0.60, 0.62, 0.61.
    sd = math.sqrt((statistics.variance([0.63, 0.59, 0.60]) + statistics.variance([0.60, 0.62, 0.61])) / 2)
    assert comparison.best_score_sd == pytest.approx(sd)
    assert comparison.best_score_seeds == seeds_to_separate_means(0.60666666 - 0.61, sd) == 378
    # Collapse rates 2/3 vs 3/3: Fleiss' formula by hand gives 18.4, 24.02 with the continuity correction: 25.
    assert comparison.collapse_rate_seeds == 25
    score, rate = [w for w in effects.warnings if "`ent`=0.001" in w]
    assert "Seeds: about 378 per level would tell them apart" in score and "(sd 0.0163)" in score
    assert score.index("includes 0") < score.index("Seeds:")
    assert "Seeds: about 25 per level would tell them apart if the rates seen here (67% vs 100%) hold" in rate


def test_warnings_say_when_no_number_of_seeds_follows_from_the_runs() -> None:
    # Both levels collapse 1 of 3 runs and score alike: no difference to plan for.
    runs = [
        RunInput(f"{g}_s{s}", _history(60 if s == 1 else None, peak), {"g": g}, s)
        for g in ("a", "b")
        for s, peak in [(1, 0.60), (2, 0.62), (3, 0.61)]
    ]
    effects = build_report(runs).effects
    (comparison,) = effects.by_factor[0].comparisons
    assert (comparison.best_score_seeds, comparison.collapse_rate_seeds) == (None, None)
    score, rate = effects.warnings
    assert score.endswith("Seeds: these runs show no difference and spread to plan a number of seeds from.")
    assert rate.endswith("Seeds: the collapse rates seen here are equal, so no number of seeds can be planned from them.")


def test_report_prints_the_seeds_advice_next_to_the_warning(tmp_path: Path) -> None:
    report = build_report(OAT)
    files = write_report(report, tmp_path, with_figures=False)
    text = files.markdown.read_text()
    assert "Warning: `ent`=0.001 and the baseline `ent`=0 cannot be told apart on the collapse rate" in text
    assert "Seeds: about 25 per level would tell them apart" in text
    (ent,) = [f for f in report_json(report)["factors"] if f["factor"] == "ent"]
    assert (ent["comparisons"][0]["best_score_seeds"], ent["comparisons"][0]["collapse_rate_seeds"]) == (378, 25)


def _asha_runs() -> list[RunInput]:
    # Level kl=0: one collapse, one healthy run, one stopped by ASHA at step 40; kl=0.01: three healthy runs.
    return [
        RunInput("kl0_s1", _history(65, 0.6), {"kl": "0"}, 1),
        RunInput("kl0_s2", _history(None, 0.6), {"kl": "0"}, 2),
        RunInput("kl0_s3", _history(None, 0.6, steps=40), {"kl": "0"}, 3, stop_reason=ASHA_STOP, stop_step=40),
        *(RunInput(f"kl0.01_s{s}", _history(None, 0.68 + 0.01 * s), {"kl": "0.01"}, s) for s in (1, 2, 3)),
    ]


def test_asha_stops_widen_the_collapse_rate_interval_to_every_outcome() -> None:
    effect = build_report(_asha_runs()).effects.by_factor[0]
    base = effect.levels[0]
    assert (base.n_collapsed, base.n_asha, base.n_rate) == (1, 1, 2)
    rate = base.collapse_rate
    # The estimate leaves the stopped run out (1 of 2); the bounds count it as survived (1/3) and as collapsed (2/3).
    assert rate.estimate == 0.5
    assert rate.low == pytest.approx(mid_p_ci(1, 3).low) and rate.high == pytest.approx(mid_p_ci(2, 3).high)
    assert rate.method == "mid-p, ASHA bounds" and "1 of 3 runs were stopped by ASHA" in rate.note
    (comparison,) = effect.comparisons
    diff = comparison.collapse_rate_diff
    assert diff.estimate == pytest.approx(0 - 0.5)
    # Lower bound: the baseline's stopped run counted as collapsed (0/3 vs 2/3); upper: as survived (0/3 vs 1/3).
    assert diff.low == pytest.approx(newcombe_mid_p_diff_ci(0, 3, 2, 3).low)
    assert diff.high == pytest.approx(newcombe_mid_p_diff_ci(0, 3, 1, 3).high)
    # The level without ASHA stops keeps the ordinary interval.
    assert effect.levels[1].collapse_rate == mid_p_ci(0, 3)


def test_rate_with_asha_bounds_covers_every_way_the_stopped_runs_could_end() -> None:
    methods = DEFAULT_METHODS
    for n_collapsed, n_runs, n_asha in [(0, 3, 3), (1, 5, 2), (2, 3, 1)]:
        interval = rate_with_asha_bounds(methods, n_collapsed, n_runs, n_asha)
        for extra in range(n_asha + 1):
            outcome = methods.rate(n_collapsed + extra, n_runs)
            assert interval.low <= outcome.low and outcome.high <= interval.high
    # Every run stopped: no estimate, but the interval still says what is possible.
    everything = rate_with_asha_bounds(methods, 0, 3, 3)
    assert math.isnan(everything.estimate) and (everything.low, everything.high) == (0.0, 1.0)


def test_asha_stops_get_a_warning_about_their_bounds_and_the_survival_curve() -> None:
    warnings = build_report(_asha_runs()).effects.warnings
    (asha,) = [w for w in warnings if "stopped by ASHA" in w]
    assert asha.startswith("`kl`=0: 1 of 3 runs were stopped by ASHA before collapsing.")
    low, high = mid_p_ci(1, 3).low, mid_p_ci(2, 3).high
    assert f"[{low * 100:.0f}%, {high * 100:.0f}%] spans every way they could have ended" in asha
    assert not any("stopped by ASHA" in w for w in build_report(OAT).effects.warnings)
