"""The store's SQLite implementation: schema, records and `SQLiteStore` (see the package's docstring)."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.design import Trial
from orchestrator.errors import StoreError
from orchestrator.history import StepMetrics
from orchestrator.store._reasons import StopReason
from orchestrator.store._records import (
    CHECKPOINT_ROLES,
    SWEEP_STATUSES,
    TRIAL_STATUSES,
    CheckpointRecord,
    EventRecord,
    SweepRecord,
    TrialRecord,
)


SCHEMA_VERSION = 2
"""The schema this module writes (`PRAGMA user_version`). A file with a higher version is refused."""

APPLICATION_ID = 0x41424C54
"""`PRAGMA application_id` of an ablate store ("ABLT")."""

_EVENT_KIND = re.compile(r"^[a-z][a-z0-9_]*$")

_SCHEMA = """
CREATE TABLE sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE trials (
    id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    name TEXT NOT NULL,
    point TEXT NOT NULL,
    levels TEXT NOT NULL,
    "values" TEXT NOT NULL,
    seed INTEGER NOT NULL,
    overrides TEXT NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    stop_step INTEGER,
    stop_evidence TEXT,
    best_step INTEGER,
    best_score REAL,
    collapse_step INTEGER,
    last_step INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    stderr_tail TEXT,
    updated REAL NOT NULL,
    parent TEXT,
    from_step INTEGER,
    remedy TEXT
);
CREATE INDEX trials_by_sweep ON trials (sweep_id);
CREATE TABLE metrics (
    trial_id TEXT NOT NULL REFERENCES trials(id),
    step INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (trial_id, step, key)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id TEXT NOT NULL REFERENCES trials(id),
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX events_by_trial ON events (trial_id, id);
CREATE TABLE checkpoints (
    trial_id TEXT NOT NULL REFERENCES trials(id),
    role TEXT NOT NULL,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (trial_id, role)
);
"""

_TRIAL_COLUMNS = (
    'id, sweep_id, name, point, levels, "values", seed, overrides, status, stop_reason, stop_step, stop_evidence, '
    "best_step, best_score, collapse_step, last_step, attempts, stderr_tail, updated, parent, from_step, remedy"
)
_MIGRATIONS = {
    # 1 -> 2: rescue branches (a trial resumed from another's checkpoint with a remedy).
    1: ("ALTER TABLE trials ADD COLUMN parent TEXT", "ALTER TABLE trials ADD COLUMN from_step INTEGER", "ALTER TABLE trials ADD COLUMN remedy TEXT"),
}
"""Store schema version -> the statements that bring a store of that version to the next one."""


class SQLiteStore:
    """The sweep store in one SQLite file (or in memory).

    Each process opens its own store; one store may be shared by the threads of a process. Do not carry an open
    store across `fork`.

    Args:
        path: The database file, created with its schema if it does not exist, or `":memory:"`.
        busy_timeout_s: How long a write waits for another connection's lock before failing.

    Raises:
        StoreError: If the file cannot be opened, is not an ablate store, or was written by a newer ablate.

    Example:
        >>> store = SQLiteStore(":memory:")
        >>> store.summary(store.create_sweep("demo", "name: demo"))["pending"]
        0
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"`busy_timeout_s` must be > 0 (got {busy_timeout_s})")
        self._memory = str(path) == ":memory:"
        self._path = str(path) if self._memory else str(Path(path))
        self._lock = threading.RLock()
        self._conn = self._connect(busy_timeout_s)
        try:
            self._prepare()
        except BaseException:
            self._conn.close()
            raise

    # ---- lifecycle -------------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Return the database file (or `":memory:"`)."""
        return self._path

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sweeps ----------------------------------------------------------------------------------------------

    def create_sweep(self, name: str, spec: str, *, sweep_id: str | None = None, status: str = "pending") -> str:
        """Add a sweep and return its id.

        Args:
            name: The spec's name.
            spec: The spec's text, kept so that a report shows exactly what ran.
            sweep_id: The id to use; defaults to `name`.
            status: The initial status, one of `SWEEP_STATUSES`.

        Raises:
            ValueError: If a sweep with this id exists, or `status` is unknown.
        """
        sweep_id = name if sweep_id is None else sweep_id
        _check_choice("status", status, SWEEP_STATUSES)
        with self._write() as conn:
            if _exists(conn, "sweeps", sweep_id):
                raise ValueError(f"sweep `{sweep_id}` already exists in {self._path}.")
            conn.execute(
                "INSERT INTO sweeps (id, name, spec, created, status) VALUES (?, ?, ?, ?, ?)",
                (sweep_id, name, spec, time.time(), status),
            )
        return sweep_id

    def get_sweep(self, sweep_id: str) -> SweepRecord:
        """Return a sweep. Raises KeyError naming the id if there is none."""
        row = self._read_one("SELECT id, name, spec, created, status FROM sweeps WHERE id = ?", (sweep_id,))
        if row is None:
            raise KeyError(f"no sweep `{sweep_id}` in {self._path}")
        return SweepRecord(*row)

    def list_sweeps(self) -> list[SweepRecord]:
        """Return every sweep, oldest first."""
        rows = self._read_all("SELECT id, name, spec, created, status FROM sweeps ORDER BY created, id", ())
        return [SweepRecord(*row) for row in rows]

    def set_sweep_status(self, sweep_id: str, status: str) -> None:
        """Set a sweep's status (one of `SWEEP_STATUSES`). Raises KeyError naming a missing id."""
        _check_choice("status", status, SWEEP_STATUSES)
        with self._write() as conn:
            cursor = conn.execute("UPDATE sweeps SET status = ? WHERE id = ?", (status, sweep_id))
            if cursor.rowcount == 0:
                raise KeyError(f"no sweep `{sweep_id}` in {self._path}")

    # ---- trials ----------------------------------------------------------------------------------------------

    def create_trials(self, sweep_id: str, trials: Iterable[Trial]) -> list[str]:
        """Add a sweep's trials, status `pending`; trials already stored are left as they are.

        Adding the same trials again (a resumed sweep) is a no-op, so their status and results survive.

        Args:
            sweep_id: The sweep they belong to.
            trials: From `orchestrator.design.expand`.

        Returns:
            The ids of the trials that were new.

        Raises:
            KeyError: If the sweep does not exist.
            ValueError: If a trial id is already stored under another sweep.
        """
        added: list[str] = []
        now = time.time()
        with self._write() as conn:
            if not _exists(conn, "sweeps", sweep_id):
                raise KeyError(f"no sweep `{sweep_id}` in {self._path}")
            for trial in trials:
                owner = conn.execute("SELECT sweep_id FROM trials WHERE id = ?", (trial.id,)).fetchone()
                # Already stored for this sweep: keep its status and results.
                if owner is not None and owner[0] == sweep_id:
                    continue
                if owner is not None:
                    raise ValueError(f"trial `{trial.id}` already belongs to sweep `{owner[0]}` in {self._path}.")
                conn.execute(
                    f"INSERT INTO trials ({_TRIAL_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, ?, ?, ?, ?)",
                    (
                        trial.id,
                        sweep_id,
                        trial.name,
                        trial.point,
                        _dumps(trial.levels),
                        _dumps(trial.values),
                        trial.seed,
                        _dumps(trial.overrides),
                        now,
                        trial.parent,
                        trial.from_step,
                        trial.remedy,
                    ),
                )
                added.append(trial.id)
        return added

    def get_trial(self, trial_id: str) -> TrialRecord:
        """Return a trial. Raises KeyError naming the id if there is none."""
        row = self._read_one(f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE id = ?", (trial_id,))
        if row is None:
            raise KeyError(f"no trial `{trial_id}` in {self._path}")
        return _trial_record(row)

    def list_trials(self, sweep_id: str, *, status: str | None = None) -> list[TrialRecord]:
        """Return a sweep's trials in the order they were added, optionally only those with `status`.

        Raises:
            KeyError: If the sweep does not exist.
        """
        if status is not None:
            _check_choice("status", status, TRIAL_STATUSES)
        with self._lock:
            if not _exists(self._conn, "sweeps", sweep_id):
                raise KeyError(f"no sweep `{sweep_id}` in {self._path}")
            sql = f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE sweep_id = ?"
            args: tuple[Any, ...] = (sweep_id,)
            if status is not None:
                sql += " AND status = ?"
                args += (status,)
            rows = self._conn.execute(sql + " ORDER BY rowid", args).fetchall()
        return [_trial_record(row) for row in rows]

    def summary(self, sweep_id: str) -> dict[str, int]:
        """Return how many of a sweep's trials are in each status (every status present, zeros included).

        Raises:
            KeyError: If the sweep does not exist.
        """
        with self._lock:
            if not _exists(self._conn, "sweeps", sweep_id):
                raise KeyError(f"no sweep `{sweep_id}` in {self._path}")
            rows = self._conn.execute(
                "SELECT status, COUNT(*) FROM trials WHERE sweep_id = ? GROUP BY status", (sweep_id,)
            ).fetchall()
        counts = dict.fromkeys(TRIAL_STATUSES, 0)
        counts.update(dict(rows))
        return counts

    def set_trial_status(self, trial_id: str, status: str) -> None:
        """Set a trial's status (one of `TRIAL_STATUSES`). Raises KeyError naming a missing id."""
        _check_choice("status", status, TRIAL_STATUSES)
        self._update_trial(trial_id, status=status)

    def set_trial_attempts(self, trial_id: str, attempts: int) -> None:
        """Set how many times the trial's trainer was started. Raises KeyError naming a missing id."""
        if attempts < 0:
            raise ValueError(f"`attempts` must be >= 0 (got {attempts})")
        self._update_trial(trial_id, attempts=attempts)

    def set_trial_stop(
        self,
        trial_id: str,
        reason: str,
        *,
        step: int | None = None,
        evidence: Mapping[str, Any] | None = None,
        status: str | None = None,
    ) -> None:
        """Record why and when a trial stopped, and set its final status.

        Args:
            trial_id: The trial.
            reason: `completed`, `collapse:<rule>`, `asha`, `failed` or `cancelled`.
            step: The step it stopped at.
            evidence: What the deciding rule saw (JSON-ready).
            status: The status to set; defaults to the one the reason leads to (`status_for_stop_reason`).

        Raises:
            KeyError: If the trial does not exist.
            ValueError: If the reason or status is unknown.
        """
        reason = StopReason(reason)
        status = reason.status if status is None else status
        _check_choice("status", status, TRIAL_STATUSES)
        self._update_trial(
            trial_id,
            status=status,
            stop_reason=reason,
            stop_step=step,
            stop_evidence=None if evidence is None else _dumps(evidence),
        )

    def clear_trial_stop(self, trial_id: str, *, status: str = "running") -> None:
        """Forget a trial's stop (a retried or resumed attempt runs again) and set its status.

        Raises:
            KeyError: If the trial does not exist.
            ValueError: If the status is unknown.
        """
        _check_choice("status", status, TRIAL_STATUSES)
        self._update_trial(trial_id, status=status, stop_reason=None, stop_step=None, stop_evidence=None)

    def set_trial_best(self, trial_id: str, step: int, score: float) -> None:
        """Set the trial's best eval step and its objective. Raises KeyError naming a missing id."""
        if math.isnan(score):
            raise ValueError(f"`score` of trial `{trial_id}` must not be NaN (a NaN is never best).")
        self._update_trial(trial_id, best_step=step, best_score=score)

    def set_trial_collapse(self, trial_id: str, step: int | None) -> None:
        """Set the trial's collapse onset step (None clears it). Raises KeyError naming a missing id."""
        self._update_trial(trial_id, collapse_step=step)

    def set_trial_stderr_tail(self, trial_id: str, text: str | None) -> None:
        """Keep the last lines the trainer wrote to stderr. Raises KeyError naming a missing id."""
        self._update_trial(trial_id, stderr_tail=text)

    # ---- metrics ---------------------------------------------------------------------------------------------

    def append_metrics(self, trial_id: str, points: Iterable[StepMetrics]) -> int:
        """Write the metrics of some steps in one transaction; a (step, key) already stored is replaced.

        Idempotent: writing the same points again (a retried attempt re-logging a step) leaves one row per
        (trial, step, key), holding the latest value. The trial's `last_step` becomes the highest step stored.

        Args:
            trial_id: The trial.
            points: The steps' metrics; NaN and inf are kept (see the module docstring), None is taken as NaN.

        Returns:
            The number of (step, key) values written.

        Raises:
            KeyError: If the trial does not exist.
        """
        rows = [
            (trial_id, point.step, key, None if value is None or math.isnan(value) else float(value))
            for point in points
            for key, value in point.metrics.items()
        ]
        steps = [row[1] for row in rows]
        with self._write() as conn:
            if not _exists(conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            # No values: nothing to write, last_step unchanged.
            if not rows:
                return 0
            conn.executemany(
                "INSERT INTO metrics (trial_id, step, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (trial_id, step, key) DO UPDATE SET value = excluded.value",
                rows,
            )
            conn.execute(
                "UPDATE trials SET last_step = MAX(COALESCE(last_step, ?), ?), updated = ? WHERE id = ?",
                (max(steps), max(steps), time.time(), trial_id),
            )
        return len(rows)

    def get_history(self, trial_id: str, *, keys: Iterable[str] | None = None) -> list[StepMetrics]:
        """Return the trial's metrics as points in increasing step order (NaN restored from NULL).

        Args:
            trial_id: The trial.
            keys: Only these metrics; steps that logged none of them are left out. Default: every metric.

        Raises:
            KeyError: If the trial does not exist.
        """
        wanted = None if keys is None else list(keys)
        with self._lock:
            if not _exists(self._conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            sql = "SELECT step, key, value FROM metrics WHERE trial_id = ?"
            args: list[Any] = [trial_id]
            if wanted is not None:
                sql += f" AND key IN ({', '.join('?' * len(wanted))})"
                args += wanted
            rows = self._conn.execute(sql + " ORDER BY step, key", args).fetchall()
        by_step: dict[int, dict[str, float]] = {}
        for step, key, value in rows:
            by_step.setdefault(step, {})[key] = math.nan if value is None else value
        return [StepMetrics(step=step, metrics=metrics) for step, metrics in by_step.items()]

    def delete_metrics(self, trial_id: str, *, after_step: int) -> int:
        """Delete the trial's metrics at steps after `after_step` (what a superseded attempt logged).

        Returns:
            The number of values deleted.

        Raises:
            KeyError: If the trial does not exist.
        """
        with self._write() as conn:
            if not _exists(conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            cursor = conn.execute("DELETE FROM metrics WHERE trial_id = ? AND step > ?", (trial_id, after_step))
            conn.execute(
                "UPDATE trials SET last_step = (SELECT MAX(step) FROM metrics WHERE trial_id = ?), updated = ? "
                "WHERE id = ?",
                (trial_id, time.time(), trial_id),
            )
        return cursor.rowcount

    # ---- events ----------------------------------------------------------------------------------------------

    def append_event(
        self, trial_id: str, kind: str, *, attempt: int | None = None, data: Mapping[str, Any] | None = None
    ) -> int:
        """Append an event to a trial's log and return its id.

        Args:
            trial_id: The trial.
            kind: lower_snake_case, e.g. one of `EVENT_KINDS`.
            attempt: The trainer attempt it concerns.
            data: Details (JSON-ready).

        Raises:
            KeyError: If the trial does not exist.
            ValueError: If `kind` is not lower_snake_case.
        """
        if not _EVENT_KIND.match(kind):
            raise ValueError(f"`kind` must be lower_snake_case such as `started` (got {kind!r})")
        with self._write() as conn:
            if not _exists(conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            cursor = conn.execute(
                "INSERT INTO events (trial_id, time, kind, attempt, data) VALUES (?, ?, ?, ?, ?)",
                (trial_id, time.time(), kind, attempt, _dumps(dict(data or {}))),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def list_events(self, trial_id: str, *, kind: str | None = None) -> list[EventRecord]:
        """Return a trial's events in append order, optionally only those of one kind.

        Raises:
            KeyError: If the trial does not exist.
        """
        with self._lock:
            if not _exists(self._conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            sql = "SELECT id, trial_id, time, kind, attempt, data FROM events WHERE trial_id = ?"
            args: tuple[Any, ...] = (trial_id,)
            if kind is not None:
                sql += " AND kind = ?"
                args += (kind,)
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [EventRecord(*row[:5], data=json.loads(row[5])) for row in rows]

    # ---- checkpoints -----------------------------------------------------------------------------------------

    def set_checkpoint(self, trial_id: str, role: str, step: int, path: str | Path) -> None:
        """Record the checkpoint kept in a role (`best` or `latest`), replacing the previous one.

        Raises:
            KeyError: If the trial does not exist.
            ValueError: If the role is unknown.
        """
        _check_choice("role", role, CHECKPOINT_ROLES)
        with self._write() as conn:
            if not _exists(conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            conn.execute(
                "INSERT INTO checkpoints (trial_id, role, step, path, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (trial_id, role) DO UPDATE SET step = excluded.step, path = excluded.path, "
                "updated = excluded.updated",
                (trial_id, role, step, str(path), time.time()),
            )

    def get_checkpoints(self, trial_id: str) -> dict[str, CheckpointRecord]:
        """Return the trial's kept checkpoints by role (a role with none is absent).

        Raises:
            KeyError: If the trial does not exist.
        """
        with self._lock:
            if not _exists(self._conn, "trials", trial_id):
                raise KeyError(f"no trial `{trial_id}` in {self._path}")
            rows = self._conn.execute(
                "SELECT trial_id, role, step, path, updated FROM checkpoints WHERE trial_id = ? ORDER BY role",
                (trial_id,),
            ).fetchall()
        return {row[1]: CheckpointRecord(*row) for row in rows}

    # ---- internals -------------------------------------------------------------------------------------------

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        if not self._memory and not Path(self._path).parent.is_dir():
            raise StoreError(f"cannot open the store {self._path}: its folder does not exist.")
        try:
            conn = sqlite3.connect(
                self._path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the store {self._path}: {error}") from error
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        return conn

    def _prepare(self) -> None:
        """Check what the file is, switch it to WAL, and create the schema if it is new."""
        conn = self._conn
        try:
            conn.execute("PRAGMA application_id").fetchone()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self._path} is not an ablate store (not an SQLite database: {error}).") from error
        self._check_identity(create=False)
        try:
            # Only an ablate store (or an empty file) gets here, so changing its journal mode is safe.
            if not self._memory:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.OperationalError as error:
            raise StoreError(f"cannot open the store {self._path}: {error}") from error
        self._check_identity(create=True)

    def _check_identity(self, *, create: bool) -> None:
        """Refuse a file that is not an ablate store or is newer; with `create`, add the schema to a new file."""
        with self._write() as conn:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            n_objects = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            # A new, empty database: ours to set up.
            if app_id == 0 and version == 0 and n_objects == 0:
                if create:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            if app_id != APPLICATION_ID:
                raise StoreError(f"{self._path} is not an ablate store (an SQLite database with other tables).")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self._path} was written by a newer ablate (store schema {version}; this ablate reads up to "
                    f"{SCHEMA_VERSION}): upgrade ablate to open it."
                )
            if version < SCHEMA_VERSION and version not in _MIGRATIONS:
                raise StoreError(f"{self._path} has store schema {version}, which this ablate cannot migrate.")
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one write transaction, taking the write lock up front (no lock upgrade, no deadlock)."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                raise StoreError(f"cannot write to the store {self._path}: {error}") from error
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as error:
                conn.execute("ROLLBACK")
                raise StoreError(f"cannot write to the store {self._path}: {error}") from error

    def _read_one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _read_all(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _update_trial(self, trial_id: str, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE trials SET {assignments}, updated = ? WHERE id = ?",
                (*fields.values(), time.time(), trial_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no trial `{trial_id}` in {self._path}")


def _exists(conn: sqlite3.Connection, table: str, row_id: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is not None


def _trial_record(row: tuple[Any, ...]) -> TrialRecord:
    (tid, sweep_id, name, point, levels, values, seed, overrides, status, stop_reason, stop_step, evidence,
     best_step, best_score, collapse_step, last_step, attempts, stderr_tail, updated, parent, from_step, remedy) = row  # fmt: skip
    return TrialRecord(
        id=tid,
        sweep_id=sweep_id,
        name=name,
        point=point,
        levels=json.loads(levels),
        values=json.loads(values),
        seed=seed,
        overrides=json.loads(overrides),
        status=status,
        stop_reason=StopReason.parse(stop_reason),
        stop_step=stop_step,
        stop_evidence=None if evidence is None else json.loads(evidence),
        best_step=best_step,
        best_score=best_score,
        collapse_step=collapse_step,
        last_step=last_step,
        attempts=attempts,
        stderr_tail=stderr_tail,
        updated=updated,
        parent=parent,
        from_step=from_step,
        remedy=remedy,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` has to be one of [{', '.join(choices)}] (got {value!r})")
