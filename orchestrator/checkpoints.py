"""`CheckpointKeeper`: keep a trial's best checkpoint and its latest one, delete the rest as the run goes.

The trainer saves in verl's layout:

    <checkpoint_dir>/global_step_N/...                    one folder per saved step
    <checkpoint_dir>/latest_checkpointed_iteration.txt    N of the newest complete checkpoint (resume starts there)

verl keeps the most recent checkpoints, not the best one. The keeper adds:

    <checkpoint_dir>/best/global_step_N/...               the checkpoint of the best eval step so far
    <checkpoint_dir>/best/best.json                       {"step": N, "score": ..., "mode": "max"}

Rules, applied by `sweep()` each time the engine has read new steps:

- Only complete checkpoints are touched: a `global_step_N` with N above the tracker's step may still be being
  written. The latest checkpoint (the tracker's N) is never deleted: a retried attempt resumes from it.
- The best checkpoint is the one of the eval step with the best score among the complete checkpoints (and the one
  already in `best/`). It is hard-linked file by file into `best/` (copied where links are not possible), so
  keeping it costs no disk space and no time, and the trainer's own folder stays as it is. If the best eval step's
  checkpoint is not written yet, the best complete one is kept meanwhile, and the best moves when the folder
  appears. Scores that are not finite (NaN, inf) are never best; of equal scores the earlier step stays best.
- Every other `global_step_N` below the latest is deleted, but only once the engine has observed step N (so its
  score, if it has one, is known): the original of the best one too, since `best/` has its own links.

Hard links share the files' contents: a trainer that rewrote a completed checkpoint's files in place would change
`best/` too. verl never does (a resume starts after the latest checkpoint and saves into new folders); pass
`link=False` to copy instead.

Pure filesystem code: no Ray, no store. `sweep()` returns what it changed so that the engine can record it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["BEST_DIR", "BEST_FILE", "TRACKER_FILE", "CheckpointKeeper", "KeptCheckpoints", "link_tree", "read_latest_step"]

TRACKER_FILE = "latest_checkpointed_iteration.txt"
BEST_DIR = "best"
BEST_FILE = "best.json"

_LOG = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


@dataclass(frozen=True)
class KeptCheckpoints:
    """What the checkpoints look like after a `sweep()`, and what it changed.

    Attributes:
        best_step: The step whose checkpoint is in `best/`, or None.
        best_score: Its score.
        best_path: `best/global_step_N`, or None.
        latest_step: The step the tracker file names (the resume point), or None.
        latest_path: `global_step_N` of the latest step, or None.
        kept: The step this sweep put into `best/` (None: `best/` unchanged).
        dropped: The step this sweep removed from `best/` because a better one replaced it.
        deleted: The `global_step_N` folders this sweep deleted, by step.
    """

    best_step: int | None
    best_score: float | None
    best_path: Path | None
    latest_step: int | None
    latest_path: Path | None
    kept: int | None = None
    dropped: int | None = None
    deleted: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        """Return True if the sweep put, removed or deleted anything."""
        return self.kept is not None or self.dropped is not None or bool(self.deleted)


def read_latest_step(checkpoint_dir: str | os.PathLike[str]) -> int | None:
    """Return the step in `latest_checkpointed_iteration.txt`, or None if it is missing or unreadable."""
    try:
        return int(Path(checkpoint_dir, TRACKER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


class CheckpointKeeper:
    """Keeps one trial's best and latest checkpoints and deletes the others.

    Call `observe` for each step the engine reads (with the eval score on eval steps), then `sweep`. A keeper
    made again for the same folder (a retried attempt, a resumed sweep) picks up `best/` from `best.json`;
    observing the history again is harmless.

    Args:
        checkpoint_dir: The trainer's checkpoint folder (verl's `trainer.default_local_dir`); it may not exist yet.
        mode: `max` if a higher score is better, `min` if a lower one is.
        link: Hard-link the best checkpoint's files into `best/` (copying where that fails); False: always copy.
        keep_evals: Also keep the checkpoints of this many latest evaluated steps (for a rescue branch from the
            last healthy checkpoint before a collapse).

    Example:
        >>> import tempfile
        >>> keeper = CheckpointKeeper(tempfile.mkdtemp(), mode="max")
        >>> keeper.observe(10, 0.5)
        >>> keeper.sweep().best_step is None  # no checkpoint saved yet
        True
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        mode: Literal["max", "min"] = "max",
        *,
        link: bool = True,
        keep_evals: int = 0,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` has to be one of [min, max] but got {mode!r}.")
        if keep_evals < 0:
            raise ValueError(f"`keep_evals` must be >= 0 (got {keep_evals})")
        self._dir = Path(checkpoint_dir)
        self._mode = mode
        self._link = link
        self._keep_evals = keep_evals
        self._scores: dict[int, float] = {}
        self._horizon: int | None = None
        self._kept: int | None = None
        self._restore()

    @property
    def checkpoint_dir(self) -> Path:
        """Return the trainer's checkpoint folder."""
        return self._dir

    @property
    def best_dir(self) -> Path:
        """Return the folder that holds the best checkpoint (`<checkpoint_dir>/best`)."""
        return self._dir / BEST_DIR

    @property
    def best_step(self) -> int | None:
        """Return the step whose checkpoint is in `best/`, or None."""
        return self._kept

    def observe(self, step: int, score: float | None = None) -> None:
        """Note that the engine has read `step`, with its eval score if it is an eval step.

        Idempotent; a later score for the same step (a resumed run validating again) replaces the earlier one.

        Args:
            step: A training step whose metrics the engine has read.
            score: The objective at this step, or None if the step has no eval. NaN and inf are never best.
        """
        if self._horizon is None or step > self._horizon:
            self._horizon = step
        if score is not None:
            self._scores[step] = float(score)

    def sweep(self) -> KeptCheckpoints:
        """Put the best complete checkpoint into `best/` and delete the folders no longer needed.

        Returns:
            The state after the sweep and what it changed.

        Raises:
            OSError: If the best checkpoint cannot be linked or copied; nothing is deleted then.
        """
        latest = read_latest_step(self._dir)
        folders = self._step_folders()
        kept = dropped = None
        target = self._best_candidate(folders, latest)
        if target is not None and target != self._kept:
            dropped = self._kept
            self._put_best(target, folders[target])
            kept = target
        deleted = self._delete_unneeded(folders, latest)
        return KeptCheckpoints(
            best_step=self._kept,
            best_score=None if self._kept is None else self._scores.get(self._kept),
            best_path=None if self._kept is None else self.best_dir / f"global_step_{self._kept}",
            latest_step=latest,
            latest_path=None if latest is None else self._dir / f"global_step_{latest}",
            kept=kept,
            dropped=dropped,
            deleted=deleted,
        )

    # ---- choosing --------------------------------------------------------------------------------------------

    def _best_candidate(self, folders: dict[int, Path], latest: int | None) -> int | None:
        """Return the best-scoring step among the complete checkpoints and the one already kept."""
        complete = {step for step in folders if latest is not None and step <= latest}
        candidates = [
            step
            for step, score in self._scores.items()
            if math.isfinite(score) and (step in complete or step == self._kept)
        ]
        # No eval step with a finite score has a complete checkpoint yet.
        if not candidates:
            return None
        sign = 1.0 if self._mode == "max" else -1.0
        return max(candidates, key=lambda step: (sign * self._scores[step], -step))

    def _delete_unneeded(self, folders: dict[int, Path], latest: int | None) -> tuple[int, ...]:
        """Delete the folders below the latest that the engine has observed; return their steps."""
        # No complete checkpoint, or no step observed: nothing is known to be unneeded.
        if latest is None or self._horizon is None:
            return ()
        deleted = []
        recent = set(sorted((step for step in self._scores if step in folders), reverse=True)[: self._keep_evals])
        for step in sorted(folders):
            if step >= latest or step > self._horizon or step in recent:
                continue
            try:
                shutil.rmtree(folders[step])
            except OSError as error:
                _LOG.warning("cannot delete checkpoint %s: %s", folders[step], error)
                continue
            deleted.append(step)
        return tuple(deleted)

    # ---- best/ -----------------------------------------------------------------------------------------------

    def _put_best(self, step: int, source: Path) -> None:
        """Place `source` at `best/global_step_<step>`, point `best.json` at it, then remove the previous best."""
        best = self.best_dir
        best.mkdir(parents=True, exist_ok=True)
        final = best / f"global_step_{step}"
        staging = best / f".global_step_{step}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        copy = _link_or_copy if self._link else shutil.copy2
        shutil.copytree(source, staging, symlinks=True, copy_function=copy)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        record = {"step": step, "score": self._scores[step], "mode": self._mode}
        _write_atomically(best / BEST_FILE, json.dumps(record) + "\n")
        previous, self._kept = self._kept, step
        if previous is not None and previous != step:
            shutil.rmtree(best / f"global_step_{previous}", ignore_errors=True)

    def _restore(self) -> None:
        """Pick up `best/` from an earlier keeper, and clear what an interrupted `_put_best` left behind."""
        try:
            record = json.loads((self.best_dir / BEST_FILE).read_text())
            step, score = int(record["step"]), float(record["score"])
        except (OSError, ValueError, KeyError, TypeError):
            step, score = None, None
        if step is not None and score is not None and (self.best_dir / f"global_step_{step}").is_dir():
            self._kept = step
            self._scores[step] = score
        if not self.best_dir.is_dir():
            return
        for entry in self.best_dir.iterdir():
            stale = entry.name.startswith(".global_step_") or (
                _STEP_DIR.match(entry.name) is not None and entry.name != f"global_step_{self._kept}"
            )
            if stale and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def _step_folders(self) -> dict[int, Path]:
        """Return the trainer's `global_step_N` folders by step."""
        try:
            entries = list(self._dir.iterdir())
        except FileNotFoundError:
            return {}
        folders = {}
        for entry in entries:
            match = _STEP_DIR.match(entry.name)
            if match and entry.is_dir():
                folders[int(match[1])] = entry
        return folders


def link_tree(source: Path, destination: Path) -> None:
    """Place a copy of the folder `source` at `destination`, hard-linking its files where the filesystem allows.

    The copy is built next to `destination` and renamed into place, so `destination` is complete or absent.
    """
    staging = destination.parent / f".{destination.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, staging, symlinks=True, copy_function=_link_or_copy)
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(staging, destination)


def _link_or_copy(source: str, destination: str) -> None:
    """Hard-link a file, or copy it where the filesystem refuses a link (another device, no link support)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
