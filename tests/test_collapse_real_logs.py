"""No collapse rule may stop the real healthy verl runs in tests/data/verl/ (a stop there is a false stop)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from orchestrator.collapse import CollapseConfig, build_rules, collect_warnings, first_verdict
from orchestrator.readers import Run, read_run

DATA = Path(__file__).resolve().parent / "data" / "verl"
FILES = sorted(p for p in DATA.glob("*/*") if p.suffix in (".log", ".tfevents"))


# Twice as strict as the defaults or more: the healthy runs must stay clear of these too.
STRICT = CollapseConfig.model_validate(
    {
        "score_drop": {"drop": 0.1, "n_evals": 1},
        "dead": {"threshold": 0.01, "drop": 0.25, "n_steps": 1},
        "length_collapse": {"ratio": 0.55, "drop": 0.1, "n_steps": 1},
        "entropy": {"collapse_ratio": 0.09, "explosion_ratio": 1.5, "drop": 0.1, "n_steps": 1},
    }
)


@cache
def run_of(path: Path) -> Run:
    return read_run(path)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_default_rules_never_stop_a_healthy_run(path: Path) -> None:
    run = run_of(path)
    assert run.objective is not None
    rules = build_rules(CollapseConfig(), run.objective, "max")
    assert first_verdict(rules, run.points) is None
    assert collect_warnings(rules, run.points) == []
    # Replayed step by step, as a live trial is judged.
    assert all(first_verdict(rules, run.points[:i]) is None for i in range(1, len(run.points), 7))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_stricter_rules_never_stop_a_healthy_run(path: Path) -> None:
    run = run_of(path)
    assert run.objective is not None
    assert first_verdict(build_rules(STRICT, run.objective, "max"), run.points) is None


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_default_rules_see_the_signals_of_a_healthy_run(path: Path) -> None:
    # The rules judge something on these runs: an objective, a grad norm, a length and an entropy are all there.
    run = run_of(path)
    names = set(run.metric_names)
    assert {"actor/grad_norm", "actor/pg_loss", "response_length/mean"} <= names
    assert names & {"actor/entropy", "actor/entropy_loss"}
    assert sum(run.objective in point.metrics for point in run.points) >= 11  # type: ignore[operator]
