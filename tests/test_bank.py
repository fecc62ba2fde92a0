"""The run bank of real public runs: consistent with its manifest, rebuilt exactly by its converter, split as
recorded, and judged by the default rules without stopping any healthy run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.collapse import CollapseConfig, build_rules, end_verdict
from orchestrator.evalsets import eval_source
from orchestrator.history import series
from orchestrator.readers import read_run

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT / "tests" / "data" / "bank"
MANIFEST = json.loads((BANK / "manifest.json").read_text())
# The fresh held-out set (gathered after the tuning and held-out halves had been seen): its runs are read and checked
# against their labels here, but no collapse rule is ever run on them in the tests, so that their report stays blind.
DEALT = [entry for entry in MANIFEST if entry["split"] != "fresh"]
FRESH = [entry for entry in MANIFEST if entry["split"] == "fresh"]


def test_the_bank_has_what_its_provenance_says() -> None:
    assert {entry["split"] for entry in MANIFEST} == {"tuning", "held_out", "fresh"}
    assert len(DEALT) == 47
    assert len({entry["source"] for entry in DEALT}) == 6
    assert sum(entry["label"] == "collapsed" for entry in DEALT) == 10
    for half in ("tuning", "held_out"):
        chosen = [entry for entry in MANIFEST if entry["split"] == half]
        assert sum(entry["label"] == "collapsed" for entry in chosen) == 5, half
    assert len(FRESH) == 4
    assert len({entry["source"] for entry in FRESH}) == 2
    assert not {entry["source"] for entry in FRESH} & {entry["source"] for entry in DEALT}
    assert sum(entry["label"] == "collapsed" for entry in FRESH) == 0


@pytest.mark.parametrize("entry", MANIFEST, ids=[Path(e["file"]).stem for e in MANIFEST])
def test_each_run_reads_cleanly_and_its_labels_fit_its_curve(entry: dict) -> None:
    run = read_run(BANK / entry["file"])
    assert run.n_skipped == 0
    evals = series(run.points, entry["validation_metric"], finite=True)
    assert len(evals) >= 4
    steps = [step for step, _ in evals]
    assert entry["peak_step"] in steps
    if entry["label"] == "collapsed":
        assert entry["onset_step"] in steps and entry["onset_step"] > entry["peak_step"]
    else:
        assert entry["label"] == "healthy" and entry["onset_step"] is None


@pytest.mark.parametrize("script", ["convert.py", "split.py"])
def test_the_converter_and_the_split_reproduce_the_committed_bank(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bank" / script), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_no_healthy_run_is_stopped_and_every_deep_collapse_is_caught() -> None:
    """With and without the sizes declared: no false stop. With the sizes declared, each run that ends below half
    its best is flagged (without them a run with a handful of evaluations may not show its noise: see the README).

    On the tuning and held-out halves only: the fresh set is not judged by the rules here (see FRESH above)."""
    for declare in (True, False):
        for entry in DEALT:
            run = read_run(BANK / entry["file"])
            metric = entry["validation_metric"]
            sizes = {eval_source(metric): entry["eval_size"]} if declare and entry["eval_size"] else {}
            verdict = end_verdict(build_rules(CollapseConfig(), metric, "max", sizes), run.points)
            values = [value for _, value in series(run.points, metric, finite=True)]
            if entry["label"] == "healthy":
                assert verdict is None, (entry["file"], verdict)
            elif declare and values[-1] < 0.5 * max(values):
                assert verdict is not None, entry["file"]
