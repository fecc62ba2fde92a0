"""Rule calibration: per collapse rule and per leading sign, how many collapses each catches, how late, and how
often it fires on runs that never collapse.

Banks:

- **binomial simulation**: evaluations of n problems, each solved with probability p (healthy: p constant; a
  collapse: p falls to a tenth at evaluation 20 of 40), 200 runs per case. This is where `noise_z` (3.5) and the
  severe-drop limits (half the gain, 4.5 standard errors) were chosen (the `noise_z` sweep below); nothing else was
  tuned on any data.
- **miniature**: the miniature's calibration runs (benchmarks/results/minigrpo_curves.json, benchmarks/minigrpo.py),
  ground truth as in the pruning benchmark (a run collapses if its score falls below 50% of its best and stays
  there; the onset is the first evaluation from which it stays below 90% of its best).
- **real bank**, tuning half and held-out half (tests/data/bank, split by benchmarks/bank/split.py before any
  threshold was tuned): ground truth is the manifest's label and onset; each run is judged by its validation metric
  with its evaluation set's size when the manifest knows it (as a user would declare it in `objective.eval_sizes`).

The terms (in time, flagged at its end, latency, lead) are those of `orchestrator.calibration`.

    python benchmarks/calibration.py        # writes benchmarks/results/calibration.md and calibration.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from orchestrator.calibration import (  # noqa: E402
    ALL_RULES,
    Case,
    RuleCalibration,
    SignCalibration,
    calibrate_rules,
    calibrate_signs,
    spread,
    tally,
)
from orchestrator.collapse import CollapseConfig, build_rules, first_verdict  # noqa: E402
from orchestrator.evalsets import eval_source  # noqa: E402
from orchestrator.history import StepMetrics  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BANK = ROOT / "tests" / "data" / "bank"
SIM_RUNS, SIM_EVALS, SIM_ONSET = 200, 40, 20


# ------------------------------------------------------------------------------------------------------ banks


def real_bank(half: str) -> list[Case]:
    """The run bank's `tuning` or `held_out` half, each run with its manifest label, onset and set size."""
    from orchestrator.readers import read_run

    cases = []
    for entry in json.loads((BANK / "manifest.json").read_text()):
        if entry["split"] != half:
            continue
        run = read_run(BANK / entry["file"])
        metric = entry["validation_metric"]
        source = eval_source(metric)
        sizes = {source: entry["eval_size"]} if entry["eval_size"] and source else {}
        onset = entry["onset_step"] if entry["label"] == "collapsed" else None
        cases.append(Case(Path(entry["file"]).stem, tuple(run.points), metric, sizes, onset))
    return cases


def miniature() -> list[Case]:
    """The miniature's calibration runs, with the curve's own ground truth (as the pruning benchmark)."""
    import pruning

    return [Case(run.name, run.points, run.objective, {}, run.onset) for run in pruning.load_mini(RESULTS / "minigrpo_curves.json")]


def simulated(n: int, p: float, collapse: bool, seed: int) -> list[Case]:
    """Binomial evaluations of n problems solved with probability p (a tenth of it from evaluation 20)."""
    metric = f"val-core/sim{n}/reward/mean@1"
    rng = np.random.default_rng(seed)
    probs = np.full(SIM_EVALS, p)
    if collapse:
        probs[SIM_ONSET:] = p / 10
    values = np.array([rng.binomial(n, probs) / n for _ in range(SIM_RUNS)])
    return _cases(values, metric, {f"sim{n}": n}, 5 * (SIM_ONSET + 1) if collapse else None)


def _cases(values: np.ndarray, metric: str, sizes: dict[str, int], onset: int | None) -> list[Case]:
    """One case per row of `values`, evaluated every 5 steps from step 5."""
    return [
        Case(f"sim{i}", tuple(StepMetrics(5 * (j + 1), {metric: float(v)}) for j, v in enumerate(row)), metric, sizes, onset)
        for i, row in enumerate(values)
    ]


# ----------------------------------------------------------------------------------------------------- tables


def rule_table(rows: Sequence[RuleCalibration]) -> str:
    lines = [
        "| rule | in time (of which before onset) | flagged at its end | late | missed | latency, evals: median [min, max] | false stops | false end flags |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.rule} | {r.in_time}/{r.collapsing} ({r.before_onset}) | {r.flagged_at_end} | {r.late} | {r.missed} | "
            f"{spread(r.latencies)} | {r.false_stops}/{r.healthy} | {r.false_end_flags}/{r.healthy} |"
        )
    return "\n".join(lines)


def sign_table(rows: Sequence[SignCalibration]) -> str:
    lines = [
        "| sign | collapsing runs logging it | warned at or before the onset | lead, steps: median [min, max] | warned after | never | false alarms (healthy runs logging it) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.sign} | {r.collapsing_logged} | {r.before} | {spread(r.leads)} | {r.after} | {r.never} | "
            f"{r.false_alarms}/{r.healthy_logged} |"
        )
    return "\n".join(lines)


def simulation_section(out: dict[str, Any]) -> list[str]:
    lines = [
        "## Binomial simulation (200 runs per case, 40 evaluations, collapse at evaluation 20 to a tenth of p)",
        "",
        "| evaluation set | p | healthy runs stopped | collapses stopped within 2 evaluations | latency, evals: median [min, max] | healthy runs stopped by the threshold alone |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for seed, (n, p) in enumerate(((30, 0.45), (30, 0.2), (30, 0.8), (100, 0.45), (500, 0.45), (1319, 0.85))):
        healthy = simulated(n, p, False, 100 + seed)
        collapsing = simulated(n, p, True, 200 + seed)
        rules = build_rules(CollapseConfig(), healthy[0].objective, "max", healthy[0].eval_sizes)
        plain = build_rules(CollapseConfig(noise_z=0), healthy[0].objective, "max", healthy[0].eval_sizes)
        false = sum(first_verdict(rules, c.points) is not None for c in healthy)
        false_plain = sum(first_verdict(plain, c.points) is not None for c in healthy)
        stats = tally(ALL_RULES, collapsing, lambda c: first_verdict(rules, c.points), None)
        within = sum(1 for lat in stats.latencies if lat <= 1)
        out[f"sim n={n} p={p}"] = {
            "healthy_stopped": false, "collapses_within_2": within, "latencies": stats.latencies,
            "healthy_stopped_threshold_alone": false_plain,
        }
        lines.append(
            f"| {n} problems | {p:g} | {false}/{SIM_RUNS} ({false / SIM_RUNS:.1%}) | {within}/{SIM_RUNS} | "
            f"{spread(stats.latencies)} | {false_plain}/{SIM_RUNS} |"
        )
    lines += ["", "`noise_z` on the 30-problem case (p 0.45), the data it was chosen on:", ""]
    lines += ["| noise_z | healthy runs stopped | collapses stopped within 2 evaluations |", "| --- | --- | --- |"]
    healthy, collapsing = simulated(30, 0.45, False, 300), simulated(30, 0.45, True, 301)
    for z in (2.5, 3.0, 3.5, 4.0):
        rules = build_rules(CollapseConfig(noise_z=z), healthy[0].objective, "max", healthy[0].eval_sizes)
        false = sum(first_verdict(rules, c.points) is not None for c in healthy)
        stats = tally(ALL_RULES, collapsing, lambda c: first_verdict(rules, c.points), None)
        within = sum(1 for lat in stats.latencies if lat <= 1)
        out[f"noise_z={z}"] = {"healthy_stopped": false, "collapses_within_2": within}
        lines.append(f"| {z:g} | {false}/{SIM_RUNS} | {within}/{SIM_RUNS} |")
    return lines


def spread_section(out: dict[str, Any]) -> list[str]:
    """Runs whose set size neither the spec nor the values show: the noise is the run's own spread."""
    metric = "val-core/unsized/reward/mean@1"
    lines = [
        "## The run's own spread: simulated runs whose set size is unknown (200 runs per case, 40 evaluations, "
        "collapse at evaluation 20 to a tenth)",
        "",
        "Scores 0.45 plus normal noise of the given deviation (continuous, so no size can be inferred), or binomial on "
        "30 problems printed to 2 decimals. The spread is taken at its 90% upper confidence bound, and until 5 "
        "healthy evaluations show it a drop must lose half the gain; both were chosen on these cases.",
        "",
        "| scores | healthy runs stopped | collapses stopped within 2 evaluations | latency, evals: median [min, max] |",
        "| --- | --- | --- | --- |",
    ]
    rules = build_rules(CollapseConfig(), metric, "max")
    for seed, (label, draw) in enumerate(
        (
            ("0.45, sd 0.09", lambda rng, p: np.clip(p + rng.normal(0.0, 0.09, p.shape), 0.0, 1.0)),
            ("0.45, sd 0.05", lambda rng, p: np.clip(p + rng.normal(0.0, 0.05, p.shape), 0.0, 1.0)),
            ("0.45, sd 0.03", lambda rng, p: np.clip(p + rng.normal(0.0, 0.03, p.shape), 0.0, 1.0)),
            ("30 problems, 2 decimals", lambda rng, p: np.round(rng.binomial(30, p) / 30, 2)),
        )
    ):
        rng = np.random.default_rng(400 + seed)
        probs = np.full((SIM_RUNS, SIM_EVALS), 0.45)
        healthy = _cases(draw(rng, probs), metric, {}, None)
        probs[:, SIM_ONSET:] = 0.045
        collapsing = _cases(draw(rng, probs), metric, {}, 5 * (SIM_ONSET + 1))
        false = sum(first_verdict(rules, c.points) is not None for c in healthy)
        stats = tally(ALL_RULES, collapsing, lambda c: first_verdict(rules, c.points), None)
        within = sum(1 for lat in stats.latencies if lat <= 1)
        out[f"spread {label}"] = {"healthy_stopped": false, "collapses_within_2": within, "latencies": stats.latencies}
        lines.append(f"| {label} | {false}/{SIM_RUNS} ({false / SIM_RUNS:.1%}) | {within}/{SIM_RUNS} | {spread(stats.latencies)} |")
    return lines


def slide_section(out: dict[str, Any]) -> list[str]:
    """`score_slide`: its `z` on healthy runs on 30 problems, and what it adds on slow slides."""
    metric = "val-core/sim/reward/mean@1"
    lines = [
        "## Slow slides: `score_slide` (window 3, 15% of the gain)",
        "",
        "Its `z` on healthy runs (30 problems, p 0.45, 40 evaluations, 200 runs; the data `z` was chosen on), the rule "
        "alone and all rules together:",
        "",
        "| score_slide z | healthy runs stopped by score_slide | by all rules |",
        "| --- | --- | --- |",
    ]
    healthy = _cases(np.random.default_rng(500).binomial(30, np.full((SIM_RUNS, SIM_EVALS), 0.45)) / 30, metric, {"sim": 30}, None)
    for z in (3.0, 3.5, 4.0, 4.5):
        config = CollapseConfig.model_validate({"score_slide": {"z": z}})
        alone = [r for r in build_rules(config, metric, "max", {"sim": 30}) if r.name == "score_slide"]
        every = build_rules(config, metric, "max", {"sim": 30})
        by_slide = sum(first_verdict(alone, c.points) is not None for c in healthy)
        by_all = sum(first_verdict(every, c.points) is not None for c in healthy)
        out[f"score_slide z={z}"] = {"healthy_stopped": by_slide, "healthy_stopped_all_rules": by_all}
        lines.append(f"| {z:g} | {by_slide}/{SIM_RUNS} | {by_all}/{SIM_RUNS} |")
    lines += [
        "",
        "Slow slides (p 0.30 for 10 evaluations, then down 0.02 an evaluation to 0.14; the onset is the first "
        "evaluation whose p lost 25%), 200 runs per set size:",
        "",
        "| problems | score_drop alone: in time (at most 1 evaluation after the onset) / caught | all rules with score_slide: in time / caught | latency with score_slide, evals: median [min, max] |",
        "| --- | --- | --- | --- |",
    ]
    path = np.concatenate([np.full(10, 0.30), np.maximum(0.30 - 0.02 * np.arange(1, 31), 0.14)])
    onset_index = int(np.argmax(path <= 0.75 * 0.30))
    for n in (198, 500):
        values = np.random.default_rng(600 + n).binomial(n, np.tile(path, (SIM_RUNS, 1))) / n
        cases = _cases(values, metric, {"sim": n}, 5 * (onset_index + 1))
        row = [f"| {n} "]
        for name, config in (
            ("score_drop", CollapseConfig.model_validate({"score_slide": {"enabled": False}})),
            ("all", CollapseConfig()),
        ):
            rules = build_rules(config, metric, "max", {"sim": n})
            stats = tally(name, cases, lambda c: first_verdict(rules, c.points), None)
            within = sum(1 for lat in stats.latencies if lat <= 1)
            out[f"slide n={n} {name}"] = {"within_1": within, "caught": len(stats.latencies), "latencies": stats.latencies}
            row.append(f"| {within}/{SIM_RUNS} / {len(stats.latencies)} ")
        row.append(f"| {spread(stats.latencies)} |")
        lines.append("".join(row))
    return lines


def bank_section(title: str, cases: Sequence[Case], out: dict[str, Any]) -> list[str]:
    n_collapsed = sum(c.onset is not None for c in cases)
    rules, signs = calibrate_rules(cases), calibrate_signs(cases)
    out[title] = {
        "runs": len(cases), "collapsed": n_collapsed,
        "rules": [r.to_dict() for r in rules], "signs": [s.to_dict() for s in signs],
    }
    return [
        f"## {title}: {len(cases)} runs, {n_collapsed} collapse",
        "",
        "Collapse rules (each alone, then all together as a live trial judges):",
        "",
        rule_table(rules),
        "",
        "Leading signs (warnings; they never stop a run):",
        "",
        sign_table(signs),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "calibration.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out: dict[str, Any] = {}
    sections = [
        "# Rule calibration",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/calibration.py', *(argv or [])])}`. Defaults of "
        "`pruning.collapse` throughout (noise_z 3.5; score_drop: 25% of the gain for 2 evaluations, or half the gain "
        "at 4.5 standard errors at once; score_slide: a 3-evaluation mean 15% of the gain and 4.5 standard errors below "
        "the best earlier one, on sets of known size).",
        "",
        *bank_section("real bank, fresh held-out set (gathered after the halves were seen; no collapse found)", real_bank("fresh"), out),
        *bank_section("real bank, held-out half", real_bank("held_out"), out),
        *bank_section("real bank, tuning half", real_bank("tuning"), out),
        *bank_section("miniature", miniature(), out),
        *simulation_section(out),
        "",
        *spread_section(out),
        "",
        *slide_section(out),
        "",
        f"Computed in {time.perf_counter() - started:.0f} s.",
    ]
    args.out.write_text("\n".join(sections) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
