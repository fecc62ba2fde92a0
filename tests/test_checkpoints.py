"""The checkpoint keeper on a fake trainer folder in verl's layout: best kept, latest kept, the rest deleted."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from orchestrator.checkpoints import TRACKER_FILE, CheckpointKeeper, read_latest_step

NAN = math.nan


def _save(root: Path, step: int, *, tracker: bool = True) -> None:
    """Write `global_step_<step>` as the trainer does, then (if complete) point the tracker at it."""
    folder = root / f"global_step_{step}"
    (folder / "actor").mkdir(parents=True)
    (folder / "actor" / "model_world_size_1_rank_0.pt").write_text(f"weights {step}")
    (folder / "data.pt").write_text(f"data {step}")
    if tracker:
        (root / TRACKER_FILE).write_text(str(step))


def _run(
    root: Path, keeper: CheckpointKeeper, scores: dict[int, float], *, last: int, save_every: int = 5
) -> list[int]:
    """Play a run to step `last`: save every `save_every` steps, observe every step, sweep; return all deletions."""
    deleted: list[int] = []
    for step in range(1, last + 1):
        if step % save_every == 0:
            _save(root, step)
        keeper.observe(step, scores.get(step))
        deleted += keeper.sweep().deleted
    return deleted


def _step_folders(root: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("global_step_")) for p in root.glob("global_step_*"))


def _best_weights(root: Path, step: int) -> str:
    return (root / "best" / f"global_step_{step}" / "actor" / "model_world_size_1_rank_0.pt").read_text()


@pytest.mark.parametrize(
    ("mode", "scores", "best"),
    [
        ("max", {10: 0.5, 20: 0.8, 30: 0.6, 40: 0.7}, 20),
        ("min", {10: 0.5, 20: 0.8, 30: 0.3, 40: 0.4}, 30),
        ("max", {10: 0.5, 20: NAN, 30: 0.6, 40: NAN}, 30),
        ("max", {10: 0.5, 20: math.inf, 30: 0.6, 40: 0.1}, 30),
        ("min", {10: 0.5, 20: -math.inf, 30: NAN, 40: 0.7}, 10),
        ("max", {10: 0.5, 20: 0.5, 30: 0.5, 40: 0.5}, 10),
        ("max", {10: 0.1, 20: 0.2, 30: 0.3, 40: 0.9}, 40),
    ],
)
def test_checkpoint_keeper_keeps_best_and_latest_and_deletes_the_rest(
    tmp_path: Path, mode: str, scores: dict[int, float], best: int
) -> None:
    keeper = CheckpointKeeper(tmp_path, mode)  # type: ignore[arg-type]
    deleted = _run(tmp_path, keeper, scores, last=40)
    assert _step_folders(tmp_path) == [40]
    assert deleted == [5, 10, 15, 20, 25, 30, 35]
    assert keeper.best_step == best
    assert [p.name for p in (tmp_path / "best").glob("global_step_*")] == [f"global_step_{best}"]
    assert _best_weights(tmp_path, best) == f"weights {best}"
    assert json.loads((tmp_path / "best" / "best.json").read_text()) == {
        "step": best,
        "score": scores[best],
        "mode": mode,
    }


def test_checkpoint_keeper_nan_scores_are_never_best(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    _run(tmp_path, keeper, {10: NAN, 20: NAN}, last=20)
    result = keeper.sweep()
    assert (result.best_step, result.best_path, result.latest_step) == (None, None, 20)
    assert _step_folders(tmp_path) == [20]
    assert not (tmp_path / "best").exists()


def test_checkpoint_keeper_replay_reports_each_change(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    scores = {10: 0.5, 20: 0.9, 30: 0.6}
    # step -> (best_step, kept, dropped, deleted) after that step's sweep
    expected = {
        5: (None, None, None, ()),
        9: (None, None, None, ()),
        10: (10, 10, None, (5,)),
        15: (10, None, None, (10,)),
        20: (20, 20, 10, (15,)),
        25: (20, None, None, (20,)),
        30: (20, None, None, (25,)),
        35: (20, None, None, (30,)),
    }
    for step in range(1, 36):
        if step % 5 == 0:
            _save(tmp_path, step)
        keeper.observe(step, scores.get(step))
        result = keeper.sweep()
        if step in expected:
            assert (result.best_step, result.kept, result.dropped, result.deleted) == expected[step], step
            assert result.latest_step == step // 5 * 5 if step >= 5 else result.latest_step is None
    assert result.best_path == tmp_path / "best" / "global_step_20"
    assert result.latest_path == tmp_path / "global_step_35"
    assert result.best_score == 0.9


def test_checkpoint_keeper_best_waits_for_its_checkpoint_to_be_written(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    _save(tmp_path, 10)
    keeper.observe(10, 0.5)
    assert keeper.sweep().best_step == 10
    keeper.observe(20, 0.9)  # the eval of step 20 is read before its checkpoint exists
    _save(tmp_path, 20, tracker=False)  # being written: above the tracker's step
    result = keeper.sweep()
    assert (result.best_step, result.kept, result.deleted) == (10, None, ())
    assert _step_folders(tmp_path) == [10, 20]
    (tmp_path / TRACKER_FILE).write_text("20")  # the save completes
    result = keeper.sweep()
    assert (result.best_step, result.kept, result.dropped, result.deleted) == (20, 20, 10, (10,))
    assert _best_weights(tmp_path, 20) == "weights 20"
    assert not (tmp_path / "best" / "global_step_10").exists()


def test_checkpoint_keeper_never_touches_the_latest_or_a_checkpoint_being_written(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    for step in (5, 10, 15):
        _save(tmp_path, step)
    _save(tmp_path, 20, tracker=False)
    for step in range(1, 21):
        keeper.observe(step, 0.9 if step == 20 else None)
    result = keeper.sweep()
    assert result.deleted == (5, 10)
    assert _step_folders(tmp_path) == [15, 20]
    assert result.best_step is None  # step 20's checkpoint is not complete yet


def test_checkpoint_keeper_does_not_delete_steps_the_engine_has_not_read(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    for step in (5, 10, 15, 20):
        _save(tmp_path, step)
    keeper.observe(10)
    assert keeper.sweep().deleted == (5, 10)
    keeper.observe(15, 0.7)  # its score arrives after the trainer moved on: still there to keep
    result = keeper.sweep()
    assert (result.best_step, result.deleted) == (15, (15,))
    assert _best_weights(tmp_path, 15) == "weights 15"
    assert _step_folders(tmp_path) == [20]


def test_checkpoint_keeper_best_that_is_also_latest_keeps_the_trainers_folder(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, "max")
    _save(tmp_path, 10)
    keeper.observe(10, 0.5)
    result = keeper.sweep()
    assert (result.best_step, result.latest_step, result.deleted) == (10, 10, ())
    assert (tmp_path / "global_step_10" / "data.pt").read_text() == "data 10"
    assert read_latest_step(tmp_path) == 10


@pytest.mark.parametrize("link", [True, False])
def test_checkpoint_keeper_links_or_copies_and_best_survives_the_original(tmp_path: Path, link: bool) -> None:
    keeper = CheckpointKeeper(tmp_path, "max", link=link)
    _save(tmp_path, 10)
    keeper.observe(10, 0.5)
    keeper.sweep()
    original = tmp_path / "global_step_10" / "data.pt"
    kept = tmp_path / "best" / "global_step_10" / "data.pt"
    assert os.path.samefile(original, kept) is link
    _save(tmp_path, 20)
    keeper.observe(20, 0.1)
    assert keeper.sweep().deleted == (10,)
    assert kept.read_text() == "data 10"


def test_checkpoint_keeper_made_again_resumes_from_best_json(tmp_path: Path) -> None:
    first = CheckpointKeeper(tmp_path, "max")
    _run(tmp_path, first, {10: 0.8, 20: 0.6}, last=20)
    (tmp_path / "best" / ".global_step_30.tmp").mkdir()  # an interrupted placement
    (tmp_path / "best" / "global_step_5").mkdir()  # a stale best
    again = CheckpointKeeper(tmp_path, "max")
    assert again.best_step == 10
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["best.json", "global_step_10"]
    _save(tmp_path, 25)
    again.observe(25, 0.7)  # worse than the kept 0.8, which the new keeper knows from best.json
    result = again.sweep()
    assert (result.best_step, result.kept, result.deleted) == (10, None, (20,))


def test_checkpoint_keeper_missing_folder_or_tracker_does_nothing(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path / "not-yet", "max")
    keeper.observe(10, 0.5)
    result = keeper.sweep()
    assert (result.best_step, result.latest_step, result.changed) == (None, None, False)
    _save(tmp_path / "not-yet", 10, tracker=False)
    assert not keeper.sweep().changed


def test_checkpoint_keeper_rejects_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"`mode` has to be one of \[min, max\] but got 'maximize'"):
        CheckpointKeeper(tmp_path, "maximize")  # type: ignore[arg-type]
