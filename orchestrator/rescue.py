"""Rescue branches: a trial a collapse rule stopped, resumed from one of its checkpoints with a remedy applied.

A branch is an ordinary trial of the sweep (stored, judged, reported, resumable) with three more fields: its
`parent` (the stopped trial's id), `from_step` (the parent's step it resumes from) and `remedy` (the remedy's
label). Its overrides are the parent's with the remedy's on top; its history starts as the parent's up to
`from_step` (so that the collapse rules judge it against the parent's peak and noise); its trainer resumes from
a hard-linked copy of the parent's checkpoint in the branch's own folder (`checkpoints/branch/global_step_N`), so
that the parent's checkpoint keeper never deletes what the branch needs.

`from: best` branches from the parent's best checkpoint; `from: last_healthy` from the latest kept checkpoint at a
step before the collapse onset (its best one at worst). Branches are not rescued again.

Pure functions plus filesystem work: no Ray. The engine's `RescueSearcher` calls `branch` as parents stop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.checkpoints import BEST_DIR, link_tree
from orchestrator.design import Trial
from orchestrator.errors import AblateError
from orchestrator.spec import Remedy, same_setting
from orchestrator.store import SQLiteStore, TrialRecord
from orchestrator.sweepdir import SweepDir

BRANCH_DIR = "branch"
"""Inside a branch's checkpoint folder: the copy of the parent's checkpoint it resumes from."""
KEEP_EVALS_FOR_LAST_HEALTHY = 5
"""With `from: last_healthy`, each trial also keeps its last five evaluated checkpoints: the rules stop a collapse
within two evaluations of its onset and the trainer may save once more before it has stopped, so the checkpoint
before the onset is among them."""


class RescueError(AblateError):
    """A rescue that cannot be made: a remedy that changes nothing, a parent without a checkpoint to branch from."""


@dataclass(frozen=True)
class BranchPoint:
    """Where a branch starts: the parent's step and the checkpoint folder (`.../global_step_N`) saved there.

    Step 0 is the initial model, which has no checkpoint (`path` None): a branch from it trains from scratch.
    """

    step: int
    path: Path | None


def is_rescuable(record: TrialRecord) -> bool:
    """Return whether a trial can be branched: a collapse rule stopped it, and it is not a branch itself."""
    return record.parent is None and record.stop_reason is not None and record.stop_reason.is_collapse


def check_remedies(trials: Sequence[Trial], remedies: Sequence[Remedy]) -> None:
    """Raise RescueError if a remedy is some trial's own setting: its branch would change nothing."""
    for i, remedy in enumerate(remedies):
        for trial in trials:
            if same_setting(trial.overrides, remedy):
                raise RescueError(
                    f"pruning.rescue.remedies[{i}] ({remedy.label}) is trial {trial.name}'s own setting: its branch "
                    "would change nothing; rescue with a setting no trial has"
                )


def branch_point(record: TrialRecord, checkpoint_dir: Path, how: str) -> BranchPoint:
    """Return the checkpoint a branch of `record` resumes from.

    Args:
        record: The stopped parent.
        checkpoint_dir: Its checkpoint folder (`trials/<name>/checkpoints`).
        how: `best` or `last_healthy`.

    Raises:
        RescueError: If the parent kept no checkpoint to branch from (it stopped before its first one).
    """
    kept: dict[int, Path | None] = {0: None}  # step 0 is the initial model: a branch from it trains from scratch
    for folder in (checkpoint_dir / BEST_DIR, checkpoint_dir):
        if folder.is_dir():
            for entry in folder.glob("global_step_*"):
                suffix = entry.name.removeprefix("global_step_")
                if suffix.isdigit() and (entry / "actor").is_dir():
                    kept.setdefault(int(suffix), entry)
    if how == "best":
        if record.best_step is not None and record.best_step in kept:
            return BranchPoint(record.best_step, kept[record.best_step])
        raise RescueError(
            f"trial {record.name} kept no checkpoint at its best step ({record.best_step}) in {checkpoint_dir}: "
            "nothing to branch from"
        )
    onset = record.collapse_step if record.collapse_step is not None else record.stop_step
    before = [step for step in kept if onset is None or step < onset]
    if not before:
        raise RescueError(
            f"trial {record.name} kept no checkpoint before its collapse onset (step {onset}) in {checkpoint_dir}: "
            "nothing to branch from"
        )
    step = max(before)
    return BranchPoint(step, kept[step])


def branch_trial(parent: Trial, remedy: Remedy, from_step: int) -> Trial:
    """Return the branch of `parent` that resumes at `from_step` with `remedy` applied."""
    overrides = {**parent.overrides, **remedy.overrides}
    key = json.dumps({"parent": parent.id, "from_step": from_step, "remedy": remedy.overrides}, sort_keys=True, default=str)
    return Trial(
        id=hashlib.sha256(key.encode()).hexdigest()[:12],
        name=f"{parent.name}+{remedy.label}",
        point=f"{parent.point}+{remedy.label}",
        levels=dict(parent.levels),
        values={**parent.values, "rescue": remedy.levels},
        seed=parent.seed,
        overrides=overrides,
        parent=parent.id,
        from_step=from_step,
        remedy=remedy.label,
    )


def branch(store: SQLiteStore, folder: SweepDir, parent: TrialRecord, remedies: Sequence[Remedy], how: str) -> list[Trial]:
    """Register `parent`'s branches in the store, ready to run; return them (those already registered included).

    Each branch gets the parent's history up to the branch step and a hard-linked copy of the parent's checkpoint
    there. Raises RescueError if the parent has no checkpoint to branch from.
    """
    point = branch_point(parent, folder.trial(parent.name) / "checkpoints", how)
    history = [p for p in store.get_history(parent.id) if p.step <= point.step]
    children = []
    for remedy in remedies:
        child = branch_trial(parent.trial(), remedy, point.step)
        children.append(child)
        target = None
        if point.path is not None:
            target = folder.trial(child.name) / "checkpoints" / BRANCH_DIR / point.path.name
            if not target.is_dir():
                link_tree(point.path, target)
        store.create_trials(parent.sweep_id, [child])
        if store.list_events(child.id, kind="branched"):
            continue  # registered before (a resumed sweep): its folder and history are in place
        store.append_metrics(child.id, history)
        if parent.best_step is not None and parent.best_score is not None and parent.best_step <= point.step:
            store.set_trial_best(child.id, parent.best_step, parent.best_score)
        data = {"parent": parent.id, "parent_name": parent.name, "from_step": point.step, "from": how, "path": None if target is None else str(target), "remedy": remedy.label}
        store.append_event(child.id, "branched", data=data)
        store.append_event(parent.id, "rescued", data={"child": child.id, "child_name": child.name, "from_step": point.step, "remedy": remedy.label})
    return children


def branch_checkpoint(store: SQLiteStore, record: TrialRecord) -> Path | None:
    """Return the checkpoint a branch's trainer resumes from when it has none of its own yet (None: not a branch)."""
    if record.parent is None:
        return None
    events = store.list_events(record.id, kind="branched")
    path = events[0].data.get("path") if events else None
    return None if path is None else Path(path)
