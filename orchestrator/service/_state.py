"""The state a running service shares between its requests: the queue, the worker, the token, the sweep stores."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.service._auth import load_or_create_token
from orchestrator.service._db import DONE, KeyConflict, ServiceDB, ServiceSweep
from orchestrator.service._models import Submission
from orchestrator.service._submit import BASE_NAME, check_submission, request_hash
from orchestrator.service._worker import RUN_DIR, SPEC_FILE, Worker, sweep_home
from orchestrator.sweepdir import SweepDir

log = logging.getLogger("ablate.service")

TRIALS_MAX_AGE_S = 1.0
"""How stale a sweep's trial list may be when the API serves it (status polls share one reading of the store)."""


class Service:
    """The state a running app shares: the queue, the worker, the token, the open sweep stores.

    Args:
        state_dir: The state folder (created if missing): `service.db`, `token`, `sweeps/<id>/`.
        root: The folder a spec's relative `trainer.base` is resolved against when its text is not sent.
        worker_options: Passed to `Worker` (max_running, address, cpus, gpus, poll_s, stop_grace_s).
    """

    def __init__(self, state_dir: Path, *, root: Path | None = None, **worker_options: Any) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir.absolute()
        self.root = (root or Path.cwd()).absolute()
        self.token = load_or_create_token(self.state_dir)
        self.db = ServiceDB(self.state_dir / "service.db")
        self.worker = Worker(self.db, self.state_dir, **worker_options)
        self._stores: dict[str, Any] = {}
        self._stores_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._trials: dict[str, tuple[float, tuple[Any, ...], list[dict[str, Any]]]] = {}
        self._effects: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._effects_lock = threading.Lock()

    # ---- sweep stores ----------------------------------------------------------------------------------------

    def store(self, sweep_id: str) -> Any:
        """Return the (shared, thread-safe) engine store of a sweep, opened once."""
        from orchestrator.store import SQLiteStore

        with self._stores_lock:
            store = self._stores.get(sweep_id)
            if store is None:
                store = SQLiteStore(SweepDir(sweep_home(self.state_dir, sweep_id) / RUN_DIR).db)
                self._stores[sweep_id] = store
            return store

    def close(self) -> None:
        """Close the open sweep stores."""
        with self._stores_lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()

    # ---- views -----------------------------------------------------------------------------------------------

    def sweep_out(self, sweep: ServiceSweep) -> dict[str, Any]:
        """Return a sweep as the API shows it."""
        try:
            counts = self.store(sweep.id).summary(sweep.name)
        except Exception:  # a sweep whose store cannot be read still shows its queue state
            counts = {}
        return {
            "id": sweep.id,
            "name": sweep.name,
            "status": sweep.status,
            "n_trials": sweep.n_trials,
            "trials": {k: int(v) for k, v in counts.items()},
            "submitted": sweep.submitted,
            "started": sweep.started,
            "finished": sweep.finished,
            "runs": sweep.runs,
            "cancel_requested": bool(sweep.cancel_requested),
            "error": sweep.error,
        }

    def trials_out(self, sweep: ServiceSweep, *, max_age_s: float = TRIALS_MAX_AGE_S) -> list[dict[str, Any]]:
        """Return a sweep's trials as the API shows them, at most `max_age_s` old.

        Reading and decoding every trial's record costs about 0.1 ms per trial; status polls (many clients, one
        sweep) share one reading per `max_age_s`.
        """
        from orchestrator.errors import StoreError
        from orchestrator.store import trial_rows

        cached = self._trials.get(sweep.id)
        now = time.monotonic()
        # A change in the queue (the sweep started, ended, was cancelled) is never served stale.
        key = (sweep.status, sweep.runs, sweep.finished)
        if cached is not None and cached[1] == key and now - cached[0] < max_age_s:
            return cached[2]
        try:
            rows = trial_rows(self.store(sweep.id), sweep.name)
        except StoreError as exc:  # its folder was removed by hand: the queue still knows the sweep
            log.warning("sweep %s: %s", sweep.id, exc)
            return []
        out = [finite({**row, "id": f"{sweep.id}:{row['id']}", "trial_id": row["id"], "sweep_id": sweep.id}) for row in rows]
        self._trials[sweep.id] = (now, key, out)
        return out

    def objective(self, sweep: ServiceSweep, trial_ids: list[str]) -> str | None:
        """Return the metric a sweep is judged by: the spec's, or (auto) that of the first trial that logged any."""
        import yaml

        from orchestrator.history import resolve_objective

        metric = ((yaml.safe_load(sweep.spec) or {}).get("objective") or {}).get("metric", "auto")
        if metric != "auto":
            return str(metric)
        store = self.store(sweep.id)
        for trial_id in trial_ids:
            history = store.get_history(trial_id)
            if history:
                return resolve_objective("auto", history, finished=True)[0]
        return None

    def effects(self, sweep: ServiceSweep, trials: list[dict[str, Any]]) -> Any:
        """Return the report's effects of the sweep's runs that have ended (`_live.LiveEffects`), or None.

        They are computed again only when another run has ended (the key is the set of ended trials), so that a
        dashboard polled every few seconds does not re-read every history each time.

        Raises:
            ReportError: If they cannot be computed, with the reason.
        """
        from orchestrator.errors import AblateError
        from orchestrator.service._live import live_effects
        from orchestrator.store import TERMINAL

        key = tuple(sorted((t["trial_id"], t["status"], t["stop_step"]) for t in trials if t["status"] in TERMINAL))
        with self._effects_lock:
            cached = self._effects.get(sweep.id)
            if cached is not None and cached[0] == key:
                return cached[1]
            try:
                live = live_effects(sweep_home(self.state_dir, sweep.id) / RUN_DIR)
            except AblateError as exc:
                raise ReportError(str(exc)) from None
            except Exception as exc:  # the dashboard shows the rest of the page, the traceback goes to the log
                log.exception("sweep %s: the live effects failed", sweep.id)
                raise ReportError(f"{type(exc).__name__}: {exc}") from None
            self._effects[sweep.id] = (key, live)
            return live

    # ---- submit ----------------------------------------------------------------------------------------------

    def submit(self, submission: Submission, key: str | None) -> tuple[ServiceSweep, bool, list[str]]:
        """Validate a submission and queue it (once per idempotency key); return the sweep, whether new, warnings.

        Raises:
            SubmissionError: If the spec is invalid (nothing is queued).
            KeyConflict: If the key was used before with a different submission.
        """
        digest = request_hash(submission.spec, submission.base)
        if key is not None:
            known = self.db.find_key(key)
            if known is not None:
                if known.request_hash != digest:
                    raise KeyConflict(key)
                return known, False, []
        resources = self.worker.resources
        checked = check_submission(
            submission.spec, submission.base, root=self.root, cpus=resources.get("CPU"), gpus=resources.get("GPU")
        )

        def prepare(sweep_id: str) -> None:
            from orchestrator.engine import prepare_sweep
            from orchestrator.spec import load_spec

            home = sweep_home(self.state_dir, sweep_id)
            home.mkdir(parents=True, exist_ok=True)
            base_path = None
            if checked.base_text is not None:
                base_path = home / BASE_NAME
                base_path.write_text(checked.base_text)
            (home / SPEC_FILE).write_text(checked.run_text(base_path))
            store, _ = prepare_sweep(load_spec(home / SPEC_FILE), (home / SPEC_FILE).read_text(), home / RUN_DIR)
            store.close()

        # A search's trials are sampled as it runs (the design holds the configuration it varies): count the samples.
        search = checked.spec.search
        n_trials = search.num_samples if search is not None else len(checked.trials)
        sweep, new = self.db.create_sweep(
            checked.spec.name, checked.submitted_text, n_trials, idempotency_key=key, request_hash=digest, prepare=prepare
        )
        if new:
            self.worker.wake()
        return sweep, new, checked.warnings

    # ---- report ----------------------------------------------------------------------------------------------

    def report(self, sweep: ServiceSweep) -> Path:
        """Return the sweep's HTML report, written as `ablate report` writes it (again only when the store changed).

        Reports are made in this process, one at a time (matplotlib's state is global).

        Raises:
            ReportError: If the report cannot be made (yet), with the reason.
        """
        from orchestrator.errors import AblateError
        from orchestrator.report import report_sweep

        folder = SweepDir(sweep_home(self.state_dir, sweep.id) / RUN_DIR)
        out = folder.path / "report"
        html = out / "report.html"
        with self._report_lock:
            changed = max((p.stat().st_mtime for p in folder.path.glob(f"{folder.db.name}*")), default=0.0)
            if html.is_file() and html.stat().st_mtime >= changed and sweep.status in DONE:
                return html
            try:
                report_sweep(folder.path, out)
            except AblateError as exc:
                raise ReportError(str(exc)) from None
            except Exception as exc:  # a report that fails is a missing report (409), its traceback in the log
                log.exception("sweep %s: the report failed", sweep.id)
                raise ReportError(f"{type(exc).__name__}: {exc}") from None
            if not html.is_file():
                raise ReportError(f"{folder.path}: the report wrote no {html.name}")
            return html


class ReportError(Exception):
    """A sweep's report cannot be made (yet); the message says why."""


def finite(value: Any) -> Any:
    """Return `value` with NaN and inf replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
