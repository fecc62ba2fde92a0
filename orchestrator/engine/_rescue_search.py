"""The Tune searcher of a sweep with rescue branches: the grid's trials first, then each stopped trial's branches.

Tune asks a searcher for the next trial whenever it could start one. `RescueSearcher` hands out the sweep's own
trials in design order; once those are all handed out it watches the store, and as soon as a collapse rule has
stopped one of them it registers that trial's branches (`orchestrator.rescue.branch`) and hands them out too. It
answers "finished" once every parent has ended in Tune and every branch is out. Its state is saved with Tune's
experiment, so a resumed driver neither loses a branch nor starts one twice.

Imported only by `_driver._tuner` (it imports Ray Tune at module level).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from typing import Any

from ray.tune.search import Searcher

from orchestrator.engine._settings import SweepSettings
from orchestrator.rescue import RescueError, branch, is_rescuable
from orchestrator.spec import Remedy
from orchestrator.store import SQLiteStore
from orchestrator.tune_schedulers import BRANCH

SCAN_EVERY_S = 1.0
"""The least time between two looks at the store for stopped trials (Tune asks many times a second)."""


class RescueSearcher(Searcher):
    """Hands out the sweep's trials, then the branches of those a collapse rule stopped.

    Args:
        settings: The sweep's settings (its store, its folders).
        trial_ids: The sweep's own trials to run, in order (none for a rescue of a finished sweep).
        parents: The trials whose collapses are rescued: `trial_ids` for a sweep with `pruning.rescue`, the chosen
            finished trials for `ablate rescue`.
        remedies: One branch per remedy.
        how: `best` or `last_healthy`.
    """

    def __init__(
        self, settings: SweepSettings, trial_ids: Sequence[str], parents: Sequence[str], remedies: Sequence[Remedy], how: str
    ) -> None:
        super().__init__()
        self._settings = settings
        self._remedies = list(remedies)
        self._how = how
        self._queue = list(trial_ids)
        self._parents = list(parents)
        self._done: set[str] = set()  # parents branched (or found not to need or allow it)
        self._ready: list[str] = []  # branches registered, not yet handed out
        self._running: dict[str, str] = {}  # Tune's trial id -> the sweep trial's id, for the sweep's own trials
        self._scanned = 0.0

    # ---- Tune's searcher protocol -------------------------------------------------------------------------------

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        return True  # the trials are the store's; Tune's metric and mode are the scheduler's business

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._queue:
            store_id = self._queue.pop(0)
            self._running[trial_id] = store_id
            return {"trial_id": store_id}
        if not self._ready:
            self._scan(force=not self._running)
        if self._ready:
            return {"trial_id": self._ready.pop(0), BRANCH: True}
        if not self._running and self._all_parents_seen():
            return Searcher.FINISHED
        return None

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self._running.pop(trial_id, None)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self._state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            state = pickle.load(file)
        self._queue, self._done, self._ready, self._running = state["queue"], state["done"], state["ready"], state["running"]

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    # ---- branching --------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"queue": self._queue, "done": self._done, "ready": self._ready, "running": self._running}

    def _all_parents_seen(self) -> bool:
        return all(parent in self._done for parent in self._parents)

    def _scan(self, *, force: bool = False) -> None:
        """Register the branches of every parent that a collapse rule has stopped since the last look."""
        now = time.monotonic()
        if not force and now - self._scanned < SCAN_EVERY_S:
            return
        self._scanned = now
        waiting = [p for p in self._parents if p not in self._done]
        if not waiting:
            return
        folder = self._settings.folder
        with SQLiteStore(self._settings.db_path) as store:
            running = set(self._running.values())
            for parent_id in waiting:
                record = store.get_trial(parent_id)
                if not is_rescuable(record):
                    if parent_id not in running:
                        self._done.add(parent_id)  # ended in Tune without a collapse: nothing to rescue
                    continue  # still running, or failed and about to be retried by Tune
                self._done.add(parent_id)
                try:
                    children = branch(store, folder, record, self._remedies, self._how)
                except (RescueError, OSError) as error:
                    store.append_event(parent_id, "rescue_skipped", data={"reason": str(error)})
                    continue
                for child in children:
                    if store.get_trial(child.id).status not in ("completed", "stopped", "cancelled"):
                        store.set_trial_status(child.id, "queued")
                        self._ready.append(child.id)
