"""Rule calibration: the ground truth of a curve, and how a rule's verdicts are tallied against it."""

from __future__ import annotations

from orchestrator.calibration import Case, calibrate_rules, curve_onset, tally
from orchestrator.collapse import Verdict
from orchestrator.history import StepMetrics

VAL = "val-core/x/reward/mean@1"


def _case(name: str, values: list[float], onset: int | None) -> Case:
    return Case(name, [StepMetrics(10 * (i + 1), {VAL: v}) for i, v in enumerate(values)], VAL, {}, onset)


def test_curve_onset_is_where_the_score_stays_below_90_percent_of_its_best() -> None:
    assert curve_onset([(10, 1.0), (20, 2.0), (30, 1.9), (40, 1.7), (50, 0.5), (60, 0.4)]) == 40
    assert curve_onset([(10, 1.0), (20, 2.0), (30, 1.0), (40, 1.2)]) is None  # ends above half its best
    assert curve_onset([(10, 1.0), (20, 2.0), (30, 0.5), (40, 1.9), (50, 0.5)]) == 50  # recovered once
    assert curve_onset([(10, 1.0)]) is None


def test_tally_counts_in_time_late_flagged_missed_and_false_stops() -> None:
    cases = [
        _case("in_time", [1, 2, 0.5, 0.5], onset=30),
        _case("late", [1, 2, 0.5, 0.5, 0.5, 0.5], onset=30),
        _case("flagged", [1, 2, 0.5], onset=30),
        _case("missed", [1, 2, 0.5, 0.5], onset=30),
        _case("healthy", [1, 2, 2, 2], onset=None),
    ]
    stops = {"in_time": 40, "late": 60, "healthy": 20}

    def check(case: Case) -> Verdict | None:
        return Verdict("r", stops[case.name], "") if case.name in stops else None

    def at_end(case: Case) -> Verdict | None:
        return Verdict("r", 30, "", {"confirmed": False}) if case.name == "flagged" else None

    record = tally("r", cases, check, at_end)
    assert (record.in_time, record.late, record.flagged_at_end, record.missed) == (1, 1, 1, 1)
    assert (record.false_stops, record.healthy, record.collapsing) == (1, 1, 4)
    assert record.latencies == [1, 3]


def test_the_default_rules_catch_a_clear_collapse_and_leave_a_plateau() -> None:
    cases = [_case("falls", [0.5, 0.8, 0.8, 0.1, 0.1], onset=40), _case("plateau", [0.5, 0.8, 0.79, 0.8, 0.81], None)]
    records = {r.rule: r for r in calibrate_rules(cases)}
    assert records["score_drop"].in_time == 1 and records["score_drop"].false_stops == 0
    # Four evaluations say nothing of the noise: no severe stop at once, the second dropped evaluation confirms.
    assert records["all rules (live, OR)"].latencies == [1]
