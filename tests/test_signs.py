"""Leading signs: each warns at the first streak past its limit, is pure, and is reported, never a stop."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.collapse import SIGN_NAMES, build_signs, collect_warnings
from orchestrator.history import StepMetrics
from orchestrator.readers import read_run

BANK = Path(__file__).parent / "data" / "bank" / "runs"


def _history(**series: list[float]) -> list[StepMetrics]:
    steps = len(next(iter(series.values())))
    return [StepMetrics(i + 1, {name: values[i] for name, values in series.items()}) for i in range(steps)]


def _signs() -> dict[str, object]:
    return {sign.name: sign for sign in build_signs()}


def test_each_sign_warns_at_its_first_streak_and_is_pure() -> None:
    signs = _signs()
    assert list(signs) == list(SIGN_NAMES)
    entropy = [1.0] * 5 + [0.5, 0.25, 0.2, 0.2, 0.1]  # early level 1.0; 0.3x from the 7th reading
    length = [100, 120, 100, 55, 58, 50, 40, 30, 30, 30]  # running max 120; below 60 from the 4th
    grad = [1.0, 2.0, 1.0, 1.0, 1.0, 0.5, 0.04, 0.01, 0.0, 0.0]  # early median 1.0; below 0.05 from the 7th
    zero = [0.0] * 10
    history = _history(**{
        "actor/entropy": entropy, "response_length/mean": length, "actor/grad_norm": grad,
        "critic/advantages/max": [1.0] * 8 + zero[:2], "critic/advantages/min": [-1.0] * 8 + zero[:2],
    })
    expected = {"entropy_fall": (9, 7), "length_fall": (6, 4), "grad_norm_vanish": (9, 7), "zero_advantage": (10, 9)}
    for name, (step, onset) in expected.items():
        warning = signs[name].warn(history)  # type: ignore[attr-defined]
        assert warning is not None and (warning.step, warning.evidence["onset_step"]) == (step, onset), name
        # Pure: the prefix that ends just before the firing step gives no warning; every longer one the same.
        assert signs[name].warn(history[: step - 1]) is None, name  # type: ignore[attr-defined]
        assert signs[name].warn(history[:step]) == warning, name  # type: ignore[attr-defined]
    assert [w.rule for w in collect_warnings(list(signs.values()), history)] == [
        "length_fall", "entropy_fall", "grad_norm_vanish", "zero_advantage"
    ]


def test_a_healthy_real_run_loses_its_entropy_but_keeps_its_length_and_gradient() -> None:
    """The measured false alarm of `entropy_fall` on real runs, on one of them: entropy falls, the score holds."""
    run = read_run(BANK / "verl-async-reward-agent__q7b_fsdp_base.jsonl")
    found = {w.rule for w in collect_warnings(build_signs(), run.points)}
    assert "entropy_fall" in found
    assert not found & {"length_fall", "grad_norm_vanish", "zero_advantage"}


def test_the_report_lists_warnings_and_never_stops_on_them(tmp_path: Path) -> None:
    metric = "val-core/big/reward/mean@1"
    rows = []
    for step in range(1, 61):
        data = {"actor/entropy": 1.0 if step <= 20 else 0.1, "response_length/mean": 300.0, "actor/grad_norm": 1.0}
        if step % 10 == 0:
            data[metric] = 0.8 if step <= 40 else 0.2
        rows.append({"step": step, "data": data})
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["analyze", str(path), "--out", str(tmp_path / "r"), "--eval-size", "big=500"])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## Leading signs" in markdown
    # entropy_fall: below 0.3x from step 21 (after the 5-reading early level), warned at step 23, 27 steps before
    # the onset at step 50.
    assert "`entropy_fall` at step 23 (27 steps before the onset)" in markdown
    csv = (tmp_path / "r" / "trials.csv").read_text()
    assert "entropy_fall@23" in csv
