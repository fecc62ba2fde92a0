"""The sweep folder's layout and the stop-reason type: the names every command and the service share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.design import Trial
from orchestrator.errors import AblateError
from orchestrator.store import SQLiteStore, StopReason
from orchestrator.sweepdir import SweepDir


def test_sweep_folder_layout_and_refusal(tmp_path: Path) -> None:
    folder = SweepDir(tmp_path / "s")
    assert (folder.db, folder.spec, folder.trial("a=1_s1")) == (
        tmp_path / "s" / "sweep.db",
        tmp_path / "s" / "spec.yaml",
        tmp_path / "s" / "trials" / "a=1_s1",
    )
    assert folder.tune_experiment == (tmp_path / "s" / "tune" / "experiment").absolute()
    with pytest.raises(AblateError, match=r"s: not a sweep directory \(no sweep.db\); run `ablate run SPEC` first"):
        folder.require()
    folder.path.mkdir()
    SQLiteStore(folder.db).close()
    assert folder.require() is folder


@pytest.mark.parametrize(
    ("text", "kind", "rule", "status"),
    [
        ("completed", "completed", None, "completed"),
        ("asha", "asha", None, "stopped"),
        ("failed", "failed", None, "failed"),
        ("cancelled", "cancelled", None, "cancelled"),
        ("collapse:score_drop", "collapse", "score_drop", "stopped"),
    ],
)
def test_stop_reasons_parse_and_say_what_they_mean(text: str, kind: str, rule: str | None, status: str) -> None:
    reason = StopReason(text)
    assert (reason, reason.kind, reason.rule, reason.status, reason.is_collapse) == (text, kind, rule, status, kind == "collapse")
    assert reason.pruned is (kind in ("asha", "collapse"))
    assert json.dumps({"r": reason}) == json.dumps({"r": text})


@pytest.mark.parametrize("bad", ["collapse:", "stopped", "collapse:a b", ""])
def test_a_bad_stop_reason_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="has to be one of"):
        StopReason(bad)
    assert StopReason.parse(bad) is None


def test_the_store_reads_stop_reasons_back_as_the_type(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "sweep.db") as store:
        store.create_sweep("s", "name: s\n", sweep_id="s")
        store.create_trials("s", [Trial(id="t", name="t_s1", point="t", levels={}, values={}, seed=1, overrides={})])
        store.set_trial_stop("t", StopReason.collapse("entropy_collapse"), step=12)
        record = store.get_trial("t")
    assert record.stop_reason == "collapse:entropy_collapse" and record.stop_reason.rule == "entropy_collapse"
    assert record.status == "stopped" and record.trial().id == "t"
