"""The report's rescue section: branches kept out of the ablation's runs, summarised per remedy, rendered.

Each test builds a real sweep folder (spec.yaml and a SQLite store) whose trials, branches and histories are known,
and reads it back through `from_store` and `report_sweep` as `ablate report` does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from orchestrator.design import Trial, expand
from orchestrator.history import StepMetrics
from orchestrator.report import from_store, report_sweep, rescue_summary
from orchestrator.rescue import branch_trial
from orchestrator.spec import parse_remedy, parse_spec
from orchestrator.store import SQLiteStore
from orchestrator.sweepdir import SweepDir

VAL = "val-core/demo/acc/mean@1"
MAX_STEPS = 100
SPEC = {
    "name": "rescue_report",
    "trainer": {"backend": "mini"},
    "factors": {"kl": [0, 0.1]},
    "seeds": 3,
    "budget": {"max_steps": MAX_STEPS, "eval_every": 10, "save_every": 10},
    "objective": {"metric": VAL, "mode": "max"},
    "pruning": {"collapse": {}},
}
# The sweep's own trials: name -> (evaluations, how it ended: (reason, step)).
OWN = {
    "kl=0_s1": ({10: 0.5, 20: 0.8, 30: 0.3, 40: 0.2}, ("collapse:score_drop", 40)),
    "kl=0_s2": ({10: 0.6, 20: 0.7, 30: 0.2, 40: 0.1}, ("collapse:score_drop", 40)),
    "kl=0_s3": ({s: 0.9 * s / MAX_STEPS for s in range(10, MAX_STEPS + 1, 10)}, ("completed", MAX_STEPS)),
    "kl=0.1_s1": ({s: 0.85 * s / MAX_STEPS for s in range(10, MAX_STEPS + 1, 10)}, ("completed", MAX_STEPS)),
    "kl=0.1_s2": ({s: 0.75 * s / MAX_STEPS for s in range(10, MAX_STEPS + 1, 10)}, ("completed", MAX_STEPS)),
    "kl=0.1_s3": ({10: 0.4, 20: 0.6, 30: 0.5, 40: 0.1, 50: 0.05}, ("collapse:score_drop", 50)),
}
# Branches from step 20: (parent, remedy) -> (their own evaluations after step 20, how they ended or None: running).
BRANCHES = {
    ("kl=0_s1", "kl"): ({30: 0.82, **{s: 0.9 for s in range(40, MAX_STEPS + 1, 10)}}, ("completed", MAX_STEPS)),
    ("kl=0_s2", "kl"): ({30: 0.65, 40: 0.3}, ("collapse:score_drop", 40)),
    ("kl=0_s1", "n"): ({30: 0.85}, None),
    ("kl=0_s2", "n"): ({}, ("failed", 25)),
}
REMEDIES = {"kl": {"kl": 0.1}, "n": {"rollout_n": 8}}
FROM_STEP = 20


def _points(evals: dict[int, float], last: int) -> list[StepMetrics]:
    """A training metric every step up to `last`, the objective at the evaluation steps."""
    return [
        StepMetrics(step, {"actor/entropy": 1.0, **({VAL: evals[step]} if step in evals else {})})
        for step in range(1, last + 1)
    ]


def _best(evals: dict[int, float]) -> tuple[int, float]:
    step = max(evals, key=lambda s: (evals[s], -s))
    return step, evals[step]


def _end(store: SQLiteStore, trial: Trial, end: tuple[str, int] | None) -> None:
    if end is None:
        store.set_trial_status(trial.id, "running")
        return
    reason, step = end
    evidence = {"reason": "the score dropped"} if reason.startswith("collapse:") else None
    store.set_trial_stop(trial.id, reason, step=step, evidence=evidence)


def _sweep(path: Path, *, branches: bool) -> Path:
    """Write a sweep folder with the trials of `OWN` (and, if `branches`, those of `BRANCHES`)."""
    path.mkdir(parents=True)
    folder = SweepDir(path)
    folder.spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    trials = {t.name: t for t in expand(parse_spec(SPEC, resolve_base=False)).trials}
    assert set(trials) == set(OWN)
    with SQLiteStore(folder.db) as store:
        store.create_sweep(SPEC["name"], folder.spec.read_text(), sweep_id="sweep")
        store.create_trials("sweep", trials.values())
        for name, (evals, end) in OWN.items():
            store.append_metrics(trials[name].id, _points(evals, end[1]))
            store.set_trial_best(trials[name].id, *_best(evals))
            _end(store, trials[name], end)
        if not branches:
            return path
        for (parent, remedy), (evals, end) in BRANCHES.items():
            child = branch_trial(trials[parent], parse_remedy(REMEDIES[remedy]), FROM_STEP)
            store.create_trials("sweep", [child])
            # Its history: the parent's points up to the step it branched from, then its own.
            last = end[1] if end is not None else max(evals)
            store.append_metrics(child.id, _points({**OWN[parent][0], **evals}, last))
            # The store's best of a branch is over its whole history (the parent's points included).
            store.set_trial_best(child.id, *_best({s: v for s, v in {**OWN[parent][0], **evals}.items() if s <= last}))
            _end(store, child, end)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweeps")
    return {"with": _sweep(root / "with", branches=True), "without": _sweep(root / "without", branches=False)}


@pytest.fixture(scope="module")
def written(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    for key, folder in folders.items():
        report_sweep(folder, out / key)
    return {key: out / key for key in folders}


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = stats.norm.ppf(0.975)
    centre = (k / n + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(k / n * (1 - k / n) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_branches_are_not_runs_of_the_ablation(folders: dict[str, Path]) -> None:
    stored = from_store(folders["with"])
    assert [run.run for run in stored.runs] == list(OWN)
    assert from_store(folders["without"]).rescue is None
    report = report_sweep(folders["with"], folders["with"] / "report").report
    runs_in_effects = {run for effect in report.effects.by_factor for group in effect.levels for run in group.runs}
    assert runs_in_effects == set(OWN)
    (kl,) = report.effects.by_factor
    assert [(g.levels["kl"], g.n_collapsed, g.n_rate) for g in kl.levels] == [("0", 2, 3), ("0.1", 1, 3)]


def test_the_summary_per_remedy_has_the_rescue_rate_scores_steps_and_the_from_scratch_runs(
    folders: dict[str, Path],
) -> None:
    rescue = from_store(folders["with"]).rescue
    assert rescue is not None and (rescue.objective, rescue.mode, rescue.max_steps) == (VAL, "max", MAX_STEPS)
    kl, n = rescue.remedies
    assert (kl.remedy, n.remedy) == ("kl=0.1", "n=8")
    # kl=0.1: one branch rescued (best after step 20: 0.9 against its parent's 0.8), one collapsed again (0.65, not
    # the parent's 0.7 at step 20, which precedes the branch).
    assert [(b.run, b.outcome, b.steps, b.best_after, b.parent_best) for b in kl.branches] == [
        ("kl=0_s1+kl=0.1", "rescued", 80, 0.9, 0.8),
        ("kl=0_s2+kl=0.1", "collapsed again", 20, 0.65, 0.7),
    ]
    assert (kl.rate.estimate, kl.rate.n) == (0.5, 2)
    assert (kl.rate.low, kl.rate.high) == pytest.approx(_wilson(1, 2))
    assert (kl.rate.low, kl.rate.high) == pytest.approx((0.09453, 0.90547), abs=1e-5)
    diffs = [0.9 - 0.8, 0.65 - 0.7]
    half = stats.t.ppf(0.975, 1) * stats.sem(diffs)
    assert kl.best_diff.estimate == pytest.approx(0.025)
    assert (kl.best_diff.low, kl.best_diff.high) == pytest.approx((0.025 - half, 0.025 + half))
    assert (kl.steps_used, kl.steps_from_scratch) == (100, 2 * MAX_STEPS)
    # From scratch: the sweep's own kl=0.1 trials (every seed), 1 of 3 collapsed, best 0.85, 0.75, 0.6.
    scratch = kl.scratch
    assert scratch is not None
    assert (scratch.runs, scratch.n_collapsed, scratch.n_rate, scratch.steps) == (
        ("kl=0.1_s1", "kl=0.1_s2", "kl=0.1_s3"),
        1,
        3,
        250,
    )
    assert (scratch.collapse_rate.low, scratch.collapse_rate.high) == pytest.approx(_wilson(1, 3))
    assert scratch.best_score.estimate == pytest.approx((0.85 + 0.75 + 0.6) / 3)
    # n=8: one branch running (its best so far stays out of the mean), one failed before evaluating.
    assert [(b.outcome, b.steps, b.best_after, b.stop_reason) for b in n.branches] == [
        ("running", 10, 0.85, None),
        ("ended otherwise", 5, None, "failed"),
    ]
    assert (n.rate.n, math.isnan(n.rate.estimate), math.isnan(n.best_diff.estimate)) == (0, True, True)
    assert (n.steps_used, n.steps_from_scratch, n.scratch) == (15, 2 * MAX_STEPS, None)


def test_a_min_objective_takes_the_lowest_score_after_the_branch_point(tmp_path: Path) -> None:
    parent = Trial("p" * 12, "p", "p", {}, {}, 1, {"k": 1, "data.seed": 1})
    child = Trial(
        "c" * 12, "p+x", "p+x", {}, {}, 1, {"k": 2, "data.seed": 1}, parent=parent.id, from_step=10, remedy="x"
    )
    scratch = Trial("s" * 12, "s", "s", {}, {}, 2, {"k": 2, "data.seed": 2})
    with SQLiteStore(tmp_path / "sweep.db") as store:
        store.create_sweep("s", "name: s", sweep_id="s")
        store.create_trials("s", [parent, child, scratch])
        store.set_trial_best(parent.id, 10, 0.3)
        store.set_trial_stop(child.id, "completed", step=30)
        store.append_metrics(
            child.id, [StepMetrics(10, {"loss": 0.3}), StepMetrics(20, {"loss": 0.5}), StepMetrics(30, {"loss": 0.4})]
        )
        records = store.list_trials("s")
        history = store.get_history(child.id)
    summary = rescue_summary(records, {child.id: history}, objective="loss", mode="min", max_steps=30)
    assert summary is not None
    (remedy,) = summary.remedies
    (branch,) = remedy.branches
    assert (branch.best_after, branch.steps, branch.best_diff) == (0.4, 20, pytest.approx(0.1))
    assert remedy.scratch is not None and remedy.scratch.runs == ("s",)
    assert rescue_summary(records[:1], {}, objective="loss", mode="min", max_steps=30) is None


def test_the_section_reads_per_remedy_and_the_json_holds_it(written: dict[str, Path]) -> None:
    md = (written["with"] / "report.md").read_text()
    section = md[md.index("## Rescue branches") : md.index("## Statistics")]
    assert (
        "| `kl=0.1` | 2 | 1 | 50% [9%, 91%] | 1 | 0 / 0 | +0.025 [-0.928, +0.978] | 100 | 200 | 33% [6%, 79%] (1/3) |"
        in section
    )
    assert "| `n=8` | 2 | 0 | – (no runs) | 0 | 1 / 1 | – (no values) | 15 | 200 | – | – |" in section
    assert (
        "`kl=0.1`: 1 of 2 finished branches reached step 100 without collapsing again: rescue rate 50% [9%, 91%]."
        in section
    )
    assert "2 branches cannot tell whether it rescues most runs or few" in section
    assert "Its interval includes 0: the branches' best cannot be told apart from their parents'." in section
    assert (
        "The branches trained 100 steps, 50% of the 200 (2 × 100) that from-scratch runs of the remedy would take."
        in section
    )
    assert (
        "The same configuration trained from step 0 in this sweep (3 runs, 250 steps): collapse rate 33% [6%, 79%] (1/3)"
        in section
    )
    assert (
        "`n=8`: none of its 2 branches has finished yet (1 still running, 1 ended otherwise: left out of the rate)."
        in section
    )
    assert "no from-scratch trials of this configuration in the sweep" in section
    assert "| kl=0_s2+kl=0.1 | kl=0_s2 | `kl=0.1` | 20 | collapsed again | 20 | 0.65 | 0.7 | -0.05 |" in section
    # Branches appear in the rescue section only.
    assert "+kl=0.1" not in md.replace(section, "") and "+n=8" not in md.replace(section, "")
    html = (written["with"] / "report.html").read_text()
    assert "<h2>Rescue branches</h2>" in html and "<td>kl=0_s1+kl=0.1</td>" in html
    rescue = json.loads((written["with"] / "summary.json").read_text())["rescue"]
    kl = rescue["remedies"][0]
    assert (kl["remedy"], kl["n_rescued"], kl["n_collapsed_again"], kl["steps_used"], kl["steps_from_scratch"]) == (
        "kl=0.1",
        1,
        1,
        100,
        200,
    )
    assert kl["rescue_rate"]["estimate"] == 0.5 and kl["from_scratch"]["n_collapsed"] == 1
    assert rescue["remedies"][1]["from_scratch"] is None and rescue["remedies"][1]["rescue_rate"]["estimate"] is None


def test_a_sweep_without_branches_reports_exactly_what_the_ablation_alone_does(written: dict[str, Path]) -> None:
    plain, branched = written["without"], written["with"]
    md = (plain / "report.md").read_text()
    assert "Rescue" not in md and "Rescue" not in (plain / "report.html").read_text()
    summary = json.loads((plain / "summary.json").read_text())
    assert "rescue" not in summary
    # The branched sweep's report is the same, but for its rescue section and its `rescue` key.
    with_md = (branched / "report.md").read_text()
    cut = with_md[with_md.index("## Rescue branches") : with_md.index("## Statistics")]
    assert with_md.replace(cut, "") == md
    with_json = json.loads((branched / "summary.json").read_text())
    del with_json["rescue"]
    assert with_json == summary
    assert (branched / "trials.csv").read_text() == (plain / "trials.csv").read_text()
