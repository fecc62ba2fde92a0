"""The dashboard's pieces without a server: the live effects table and the per-configuration panels.

The server, the live sweep and headless Chromium are tested in tests/test_service.py.
"""

from __future__ import annotations

import re

from orchestrator.history import StepMetrics
from orchestrator.report import OKABE_ITO, RunInput, build_report, config_colours
from orchestrator.report._curves import mean_curve
from orchestrator.service._charts import SeriesGroup, config_panels
from orchestrator.service._dashboard import sweep_page, trial_groups
from orchestrator.service._live import CANNOT_TELL, LiveEffects, effects_html

METRIC = "val-core/mini/reward/mean@1"


def _run(name: str, kl: str, seed: int, scores: list[float], stop: str = "completed") -> RunInput:
    history = [StepMetrics(5 * i, {METRIC: v}) for i, v in enumerate(scores)]
    return RunInput(run=name, history=history, levels={"kl": kl}, seed=seed, stop_reason=stop, stop_step=5 * (len(scores) - 1))


def _live(runs: list[RunInput], n_runs: int) -> LiveEffects:
    effects = build_report(runs, objective=METRIC, baseline={"kl": "0"} if any(r.levels["kl"] == "0" for r in runs) else {}).effects
    return LiveEffects(len(runs), n_runs, effects, {"kl": "0"}, {"kl": ["0", "0.1"]}, "max")


def test_mean_curve_is_full_while_every_seed_has_a_value_then_partial() -> None:
    full, partial = mean_curve([[(0, 1.0), (5, 2.0), (10, 3.0)], [(0, 3.0), (5, 4.0)]])
    assert full == [(0, 2.0), (5, 3.0)]
    assert partial == [(5, 3.0), (10, 3.0)]
    assert mean_curve([[(0, 1.0)], [(0, 3.0)]]) == ([(0, 2.0)], [])


def test_effects_html_waits_for_the_baseline_then_says_cannot_tell_apart_yet() -> None:
    colours = config_colours(["kl=0", "kl=0.1"])
    early = effects_html(_live([_run("a1", "0.1", 1, [1.0, 1.2, 1.3])], 4), colours)
    assert 'data-ended="1" data-runs="4"' in early and "no baseline run has ended yet" in early
    assert re.search(r'data-level="0">.*?no run has ended yet', early)
    # Two seeds each, overlapping best scores: the difference's interval includes 0.
    runs = [
        _run("b1", "0", 1, [1.0, 1.4, 1.1]),
        _run("b2", "0", 2, [1.0, 1.2, 1.3]),
        _run("a1", "0.1", 1, [1.0, 1.3, 1.2]),
        _run("a2", "0.1", 2, [1.0, 1.5, 1.4]),
    ]
    later = effects_html(_live(runs, 4), colours)
    row = re.search(r'<tr class="effect" data-factor="kl" data-level="0.1">(.*?)</tr>', later).group(1)
    assert CANNOT_TELL in row and "+0.05 [" in row, row  # best 1.4 vs 1.35
    assert 'data-ended="4"' in later and later != early
    assert re.findall(r'<tr class="configuration" data-config="([^"]+)"><td><i class="swatch" style="background:(#\w+)', later) == [
        ("kl=0", colours["kl=0"]),
        ("kl=0.1", colours["kl=0.1"]),
    ]


def test_effects_html_without_factors_says_there_is_nothing_to_compare() -> None:
    runs = [RunInput(run="r", history=[StepMetrics(0, {METRIC: 1.0})], stop_reason="completed")]
    live = LiveEffects(1, 3, build_report(runs, objective=METRIC).effects, {}, {}, "max")
    html = effects_html(live, {})
    assert "No factors to compare" in html and '<table id="effects">' not in html


def _trial(tid: str, kl: str, seed: int, onset: int | None = None) -> dict[str, object]:
    return {
        "id": f"s-1:{tid}", "trial_id": tid, "name": f"kl={kl}_s{seed}", "seed": seed, "levels": {"kl": kl}, "status": "completed",
        "step": 10, "best_score": 1.0, "best_step": 5, "stop_reason": "completed", "stop_step": 10, "collapse_step": onset,
        "why": None, "parent": None,
    }  # fmt: skip


def test_sweep_page_draws_one_group_per_configuration_in_its_colour() -> None:
    trials = [_trial(f"t{i}", kl, seed, onset=5 if kl == "0" and seed == 1 else None) for i, (kl, seed) in enumerate(
        [("0", 1), ("0.1", 1), ("0", 2), ("0.1", 2), ("0", 3)])]  # fmt: skip
    curves = {t["id"]: [(0, 1.0), (5, 1.0 + 0.1 * i), (10, 0.9)] for i, t in enumerate(trials)}
    assert list(trial_groups(trials)) == ["kl=0", "kl=0.1"]
    sweep = {"id": "s-1", "status": "running", "n_trials": 5, "submitted": 0.0, "error": None}
    html = sweep_page(sweep, trials, curves, METRIC, baseline_levels={"kl": "0"})
    colours = config_colours(["kl=0", "kl=0.1"])
    groups = re.findall(r'<g class="config-group" data-config="([^"]+)" data-colour="([^"]+)">(.*?)</g>', html, re.S)
    assert [(label, colour) for label, colour, _ in groups] == [("kl=0", colours["kl=0"]), ("kl=0.1", colours["kl=0.1"])]
    for label, colour, body in groups:
        seeds = re.findall(r'class="seed-curve" data-trial="([^"]+)" fill="none" stroke="([^"]+)"', body)
        assert {t for t, _ in seeds} == {t["id"] for t in trials if f"kl={t['levels']['kl']}" == label}
        assert {c for _, c in seeds} == {colour} and colour in OKABE_ITO
        assert re.search(rf'class="config-mean" data-runs="{len(seeds)}" fill="none" stroke="{colour}"', body)
    # The baseline's mean, grey, in the other panel only; the one onset marked; a running sweep refreshes itself.
    assert [body.count('class="baseline-mean"') for _, _, body in groups] == [0, 1]
    assert html.count('class="collapse-marker"') == 1
    assert "DOMParser" in html and 'data-running="1"' in html
    assert "DOMParser" not in sweep_page({**sweep, "status": "completed"}, trials, curves, METRIC)


def test_config_panels_without_scores_say_so() -> None:
    assert 'id="no-curves"' in config_panels([SeriesGroup("kl=0", OKABE_ITO[0], (("t", "t", None, []),))], METRIC)
