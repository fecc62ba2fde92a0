"""The sweep store: one SQLite file holding sweeps, trials, per-step metrics, events and kept checkpoints.

It is the one source of truth for `ablate status`, reports and resume. Several processes write to it at once (the
Ray driver and each trial's worker), each through its own `SQLiteStore`: the file is in WAL mode, every write is
one `BEGIN IMMEDIATE` transaction, and a writer waits up to `busy_timeout_s` for another's lock instead of
failing with "database is locked".

Tables:

    sweeps       id, name, spec (the spec's text), created, status
    trials       id, sweep_id, name, point, levels, "values", seed, overrides (JSON), status, stop_reason,
                 stop_step, stop_evidence (JSON), best_step, best_score, collapse_step, last_step, attempts,
                 stderr_tail, updated
    metrics      trial_id, step, key, value          PRIMARY KEY (trial_id, step, key)
    events       id, trial_id, time, kind, attempt, data (JSON)
    checkpoints  trial_id, role (best|latest), step, path, updated      PRIMARY KEY (trial_id, role)

Non-finite metric values: `value` is a REAL column. SQLite stores +inf and -inf as REAL infinities, so they round
trip as they are; it cannot store NaN and turns it into NULL. A metrics row exists only for a metric that was
logged (a metric missing at a step has no row, as in `StepMetrics`), so NULL unambiguously means NaN, and `get_history`
turns it back into `float("nan")`. SQL aggregates skip NULL, so a NaN never wins a `max(value)`.

JSON columns are written by Python's `json` module, which writes NaN and inf as the tokens `NaN` and `Infinity`:
they read back exactly in Python, but SQLite's own `json_*` functions reject them.

Times (`created`, `updated`, event `time`) are Unix seconds (float, UTC).

The file is marked with `PRAGMA application_id` and versioned with `PRAGMA user_version`; opening another SQLite
file, or one written by a newer ablate, raises `StoreError` naming the path.
"""

from orchestrator.store._reasons import STOP_KINDS, StopReason
from orchestrator.store._records import (
    CHECKPOINT_ROLES,
    EVENT_KINDS,
    SWEEP_STATUSES,
    TRIAL_STATUSES,
    CheckpointRecord,
    EventRecord,
    SweepRecord,
    TrialRecord,
    status_for_stop_reason,
)
from orchestrator.store._sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore
from orchestrator.store._views import TERMINAL, objectives, progress_thread, started, trial_rows

__all__ = [
    "APPLICATION_ID",
    "CHECKPOINT_ROLES",
    "EVENT_KINDS",
    "SCHEMA_VERSION",
    "STOP_KINDS",
    "SWEEP_STATUSES",
    "TERMINAL",
    "TRIAL_STATUSES",
    "CheckpointRecord",
    "EventRecord",
    "SQLiteStore",
    "StopReason",
    "SweepRecord",
    "TrialRecord",
    "objectives",
    "progress_thread",
    "started",
    "status_for_stop_reason",
    "trial_rows",
]
