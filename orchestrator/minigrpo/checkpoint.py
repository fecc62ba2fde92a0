"""Checkpoints in verl's layout.

    <default_local_dir>/latest_checkpointed_iteration.txt      the step N of the newest complete checkpoint
    <default_local_dir>/global_step_N/actor/model_world_size_1_rank_0.pt        policy weights
    <default_local_dir>/global_step_N/actor/optim_world_size_1_rank_0.pt        AdamW state
    <default_local_dir>/global_step_N/actor/extra_state_world_size_1_rank_0.pt  LR scheduler, RNG states, step
    <default_local_dir>/global_step_N/data.pt                                   data-loader position

A checkpoint is written into a temporary folder and renamed into place, then the tracker file is replaced, so an
interrupted save never leaves a half-written `global_step_N` that the tracker points at.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TRACKER_FILE = "latest_checkpointed_iteration.txt"
MODEL_FILE = "model_world_size_1_rank_0.pt"
OPTIM_FILE = "optim_world_size_1_rank_0.pt"
EXTRA_FILE = "extra_state_world_size_1_rank_0.pt"
DATA_FILE = "data.pt"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


@dataclass
class TrainingState:
    """Everything a resumed run needs to continue exactly.

    Attributes:
        step: The last completed training step.
        model: Policy state dict.
        optimizer: Optimizer state dict.
        scheduler_steps: LR scheduler steps taken.
        rng: Named RNG states (torch.Generator.get_state() tensors).
        data: Data-loader position (epoch and index within it).
    """

    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler_steps: int
    rng: dict[str, torch.Tensor]
    data: dict[str, int]


def step_dir(root: Path, step: int) -> Path:
    """Return `<root>/global_step_<step>`."""
    return root / f"global_step_{step}"


def save(root: Path, state: TrainingState, keep: int | None) -> Path:
    """Write a checkpoint of `state` under `root`, update the tracker, and prune to the `keep` most recent.

    Args:
        root: trainer.default_local_dir.
        state: What to save.
        keep: trainer.max_actor_ckpt_to_keep (None keeps all).

    Returns:
        The checkpoint folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, state.step)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.tmp-"))
    actor = staging / "actor"
    actor.mkdir()
    torch.save(state.model, actor / MODEL_FILE)
    torch.save(state.optimizer, actor / OPTIM_FILE)
    extra = {"global_step": state.step, "lr_scheduler": {"last_step": state.scheduler_steps}, "rng": state.rng}
    torch.save(extra, actor / EXTRA_FILE)
    torch.save(state.data, staging / DATA_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _write_atomic(root / TRACKER_FILE, str(state.step))
    if keep is not None:
        _prune(root, keep)
    return final


def latest(root: Path) -> Path | None:
    """Return the folder the tracker file names, or None when there is no complete checkpoint."""
    tracker = root / TRACKER_FILE
    if not tracker.exists():
        return None
    folder = step_dir(root, int(tracker.read_text().strip()))
    return folder if folder.exists() else None


def load(folder: Path) -> TrainingState:
    """Read the checkpoint in `folder` (a global_step_N folder)."""
    actor = folder / "actor"
    extra = torch.load(actor / EXTRA_FILE, weights_only=True)
    return TrainingState(
        step=int(extra["global_step"]),
        model=torch.load(actor / MODEL_FILE, weights_only=True),
        optimizer=torch.load(actor / OPTIM_FILE, weights_only=True),
        scheduler_steps=int(extra["lr_scheduler"]["last_step"]),
        rng=dict(extra["rng"]),
        data=dict(torch.load(folder / DATA_FILE, weights_only=True)),
    )


def _prune(root: Path, keep: int) -> None:
    steps = sorted(int(m.group(1)) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)))
    for step in steps[:-keep]:
        shutil.rmtree(step_dir(root, step), ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(tmp, path)
