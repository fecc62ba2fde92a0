"""config_colours: Okabe-Ito colours dealt in the report's order of configurations, whatever order they come in."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.history import StepMetrics
from orchestrator.report import OKABE_ITO, RunInput, build_report, config_colours, config_label

DEMO = [
    "lr_schedule=const, kl=0, entropy_coeff=0, rollout_n=2",
    "lr_schedule=cos, kl=0, entropy_coeff=0, rollout_n=2",
    "lr_schedule=const, kl=0.01, entropy_coeff=0, rollout_n=2",
    "lr_schedule=const, kl=0.1, entropy_coeff=0, rollout_n=2",
    "lr_schedule=const, kl=0, entropy_coeff=0.01, rollout_n=2",
    "lr_schedule=const, kl=0, entropy_coeff=0, rollout_n=8",
]


def test_config_colours_are_okabe_ito_in_the_reports_order() -> None:
    colours = config_colours(DEMO)
    # Level indices per factor in the names' factor order: the baseline (all first levels) first, cos last.
    assert colours == {
        DEMO[0]: "#0072B2",
        DEMO[5]: "#D55E00",
        DEMO[4]: "#009E73",
        DEMO[2]: "#CC79A7",
        DEMO[3]: "#E69F00",
        DEMO[1]: "#56B4E9",
    }
    assert list(colours) == [DEMO[i] for i in (0, 5, 4, 2, 3, 1)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4)))[::5])
def test_config_colours_do_not_depend_on_the_order_given(order: tuple[int, ...]) -> None:
    names = ["kl=0.1, n=2", "kl=0, n=2", "kl=0.01, n=2", "kl=0, n=8"]
    assert config_colours([names[i] for i in order]) == config_colours(names)
    # Levels sort numerically: 0 < 0.01 < 0.1.
    assert config_colours(names)["kl=0, n=2"] == OKABE_ITO[0] and config_colours(names)["kl=0.1, n=2"] == OKABE_ITO[3]


def test_config_colours_repeat_only_past_eight_and_put_unparsed_names_last() -> None:
    many = config_colours(f"seed_group={i}" for i in range(10))
    assert len(set(list(many.values())[:8])) == 8 and many["seed_group=8"] == many["seed_group=0"]
    mixed = config_colours(["all runs", "kl=0.1", "kl=0"])
    assert list(mixed) == ["kl=0", "kl=0.1", "all runs"]
    assert config_colours(["kl=0", "kl=0", "kl=1"]) == {"kl=0": OKABE_ITO[0], "kl=1": OKABE_ITO[1]}


def test_config_colours_match_the_reports_configuration_order() -> None:
    points = [StepMetrics(step, {"val-core/demo/acc/mean@1": 0.1 * step}) for step in range(1, 6)]
    runs = [
        RunInput(f"{kl}_{n}_s{s}", points, {"kl": kl, "n": n}, s)
        for kl, n in (("0.1", "2"), ("0", "8"), ("0", "2"), ("0.01", "2"))
        for s in (1, 2)
    ]
    labels = [g.label for g in build_report(runs).effects.configurations]
    assert labels[0] == "kl=0, n=2" and len(labels) == 4
    assert list(config_colours(reversed(labels))) == labels
    assert config_label({"kl": "0.01", "lr": "cos"}) == "kl=0.01, lr=cos" and config_label({}) == "all runs"
