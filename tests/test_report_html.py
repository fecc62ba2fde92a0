"""report.html in headless Chromium: the figures are inline SVG that render, and what a reader groups by is drawn.

One panel per configuration holding each of its seeds in the configuration's colour, their mean bold and an x at
each onset; per factor an interval per level and a zero line, the zero line inside an interval exactly when the
interval includes 0; a Kaplan-Meier curve and band per level. Skipped where Chromium is absent.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.history import StepMetrics
from orchestrator.report import RunInput, build_report, config_colours, config_label, write_report

sys.path.insert(0, str(Path(__file__).parent))
from report_probe import CHROMIUM, probe_report  # noqa: E402

VAL = "val-core/demo/acc/mean@1"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (install it with `apt-get install -y chromium`)"
)

def _history(collapse_at: int | None, peak: float) -> list[StepMetrics]:
    points = []
    for step in range(1, 81):
        alive = collapse_at is None or step < collapse_at
        metrics = {"actor/entropy": 1.0 if alive else 0.02, "response_length/mean": 300.0 if alive else 9.0}
        if step % 10 == 0:
            metrics[VAL] = min(peak, peak * step / 40) if alive else 0.0
        points.append(StepMetrics(step, metrics))
    return points


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One factor at a time around kl=0, n=2: kl=0 collapses in every seed, kl=0.01 never, n=8 in one seed of 3."""
    runs = []
    for kl, n in (("0", "2"), ("0.01", "2"), ("0", "8")):
        for s in (1, 2, 3):
            collapse_at = 40 + 10 * s if kl == "0" and (n == "2" or s == 1) else None
            runs.append(RunInput(f"kl{kl}_n{n}_s{s}", _history(collapse_at, 0.5 + 0.01 * s), {"kl": kl, "n": n}, s))
    return write_report(build_report(runs), tmp_path_factory.mktemp("report")).html.parent


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _grouping_problems(probe: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Return every way the validation panels differ from the report's configurations (empty when none)."""
    problems = []
    configs = {config_label(c["levels"]): set(c["runs"]) for c in summary["configurations"]}
    collapsed = {r["run"] for r in summary["runs"] if r["collapse"] is not None}
    colours = config_colours(configs)
    panels = {p["config"]: p for p in probe["panels"]}
    if len(probe["panels"]) != len(configs) or set(panels) != set(configs):
        problems.append(f"panels {sorted(panels)} are not one per configuration {sorted(configs)}")
    for name, runs in configs.items():
        panel = panels.get(name)
        if panel is None:
            continue
        drawn = [seed["run"] for seed in panel["seeds"]]
        if sorted(drawn) != sorted(runs):
            problems.append(f"{name}: seeds drawn {sorted(drawn)}, runs {sorted(runs)}")
        if {seed["stroke"] for seed in panel["seeds"]} != {_rgb(colours[name])} or panel["colour"] != colours[name]:
            problems.append(f"{name}: seeds not all in {colours[name]}: {panel['seeds']}")
        if panel["mean"] is None or panel["mean"]["stroke"] != _rgb(colours[name]):
            problems.append(f"{name}: no mean in the configuration's colour")
        elif not all(panel["mean"]["width"] > 2 * seed["width"] for seed in panel["seeds"]):
            problems.append(f"{name}: the mean is not bold against its seeds")
        if sorted(panel["onsets"]) != sorted(runs & collapsed):
            problems.append(f"{name}: onsets marked {sorted(panel['onsets'])}, collapsed {sorted(runs & collapsed)}")
    return problems


def test_report_html_groups_validation_curves_one_panel_per_configuration(written: Path, tmp_path: Path) -> None:
    summary = json.loads((written / "summary.json").read_text())
    probe = probe_report(written / "report.html", tmp_path)
    assert len(summary["configurations"]) == 3 and len(probe["panels"]) == 3
    assert _grouping_problems(probe, summary) == []
    # Three configurations: three different colours, and panels laid out side by side with a real size.
    assert len({p["colour"] for p in probe["panels"]}) == 3
    assert all(p["box"]["width"] > 150 and p["box"]["height"] > 100 for p in probe["panels"])
    assert set(probe["figures"]) == {"fig-validation", "fig-effects", "fig-survival", "fig-signals"}
    assert all(b["width"] > 400 and b["height"] > 200 for b in probe["figures"].values()), probe["figures"]


def test_report_html_grouping_check_sees_a_missing_seed(written: Path, tmp_path: Path) -> None:
    # The check can fail: a copy of the report without one seed's line (and one onset) is caught.
    summary = json.loads((written / "summary.json").read_text())
    page = (written / "report.html").read_text()
    cut = re.sub(r'<g id="val-seed-0-1" data-run="[^"]*">.*?</g>', "", page, count=1, flags=re.S)
    assert cut != page
    broken = tmp_path / "broken.html"
    broken.write_text(cut)
    problems = _grouping_problems(probe_report(broken, tmp_path), summary)
    assert len(problems) == 1 and "seeds drawn" in problems[0], problems


def test_report_html_effects_draw_an_interval_per_level_around_a_zero_line(written: Path, tmp_path: Path) -> None:
    summary = json.loads((written / "summary.json").read_text())
    probe = probe_report(written / "report.html", tmp_path)
    zeros = {(z["factor"], z["measure"]): z for z in probe["zeros"]}
    assert set(zeros) == {(f, m) for f in ("kl", "n") for m in ("score", "rate")}
    assert all(z["height"] > 30 for z in zeros.values())
    intervals = {(i["factor"], i["level"], i["measure"]): i for i in probe["intervals"]}
    seen = []
    for factor in summary["factors"]:
        for c in factor["comparisons"]:
            for measure, key in (("score", "best_score_diff"), ("rate", "collapse_rate_diff")):
                drawn, zero = intervals[(factor["factor"], c["level"], measure)], zeros[(factor["factor"], measure)]
                includes_zero = c[key]["low"] <= 0 <= c[key]["high"]
                assert (drawn["left"] <= zero["x"] <= drawn["right"]) == includes_zero, (factor["factor"], c, drawn, zero)
                seen.append(includes_zero)
    assert len(intervals) == len(seen) == 4
    # The fixture holds both kinds: kl=0.01's collapse rate (0/3 against 3/3) is told apart, the scores are not.
    assert True in seen and False in seen


def test_report_html_survival_has_a_curve_and_a_band_per_level(written: Path, tmp_path: Path) -> None:
    probe = probe_report(written / "report.html", tmp_path)
    expected = {("kl", "0"), ("kl", "0.01"), ("n", "2"), ("n", "8")}
    assert {(k["factor"], k["level"]) for k in probe["km"]} == expected
    bands = {(b["factor"], b["level"]): b for b in probe["bands"]}
    # Levels where some run collapsed have a band with an extent; kl=0.01 never collapsed: its band is flat at 1.
    assert set(bands) == expected
    assert bands[("kl", "0")]["height"] > 20 and bands[("n", "8")]["height"] > 20


def test_report_html_answers_first(written: Path, tmp_path: Path) -> None:
    probe = probe_report(written / "report.html", tmp_path)
    answer = probe["answer"]
    assert answer.startswith("Answer. Against the baseline (kl=0, n=2), with 95% intervals: ")
    assert "kl=0.01 lowers the collapse rate from 100% to 0% (-100 points, 95% interval [" in answer
    assert "The data cannot tell from the baseline on either measure n=8" in answer
    md = (written / "report.md").read_text()
    assert md.index("**Answer.**") < md.index("## Plots") < md.index("## Which factor") < md.index("## Effects per factor")
    assert "![" in md and "validation.png" in md and 'src="data:image/png' not in (written / "report.html").read_text()
