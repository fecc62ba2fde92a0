"""The service's own state: the sweep queue and the idempotency keys, in one SQLite file under the state dir.

Each sweep submitted to the service has a row here; its results live in the engine's sweep store, in the sweep's
own directory (`<state>/sweeps/<id>/run/sweep.db`). Every method opens its own connection, so the request threads
and the worker thread never share one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import StoreError

SWEEP_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
"""A service sweep's life: queued -> running -> completed | failed | cancelled (queued -> cancelled too)."""
DONE = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    n_trials INTEGER NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    error TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT
);
CREATE INDEX IF NOT EXISTS sweeps_by_status ON sweeps (status, seq);
"""


@dataclass(frozen=True)
class ServiceSweep:
    """One submitted sweep, as the service's queue knows it.

    Attributes:
        id: `<spec name>-<n>`, unique in this service.
        name: The spec's name (the sweep id inside its own store).
        status: One of `SWEEP_STATUSES`.
        spec: The spec text as submitted.
        n_trials: How many trials the spec expands to.
        submitted, started, finished: Unix times (started: the latest run; None until then).
        runs: How many times a worker process started the sweep (more than 1 after a service restart: a resume).
        cancel_requested: A cancel was asked for.
        exit_code: The last worker process's exit status.
        error: Why the sweep failed, in one line.
        idempotency_key: The client's key, if it sent one.
        request_hash: A hash of the request the key was first used with.
    """

    seq: int
    id: str
    name: str
    status: str
    spec: str
    n_trials: int
    submitted: float
    started: float | None
    finished: float | None
    runs: int
    cancel_requested: bool
    exit_code: int | None
    error: str | None
    idempotency_key: str | None
    request_hash: str | None


class KeyConflict(Exception):
    """An idempotency key that was first used with a different request."""


class ServiceDB:
    """The service's queue of sweeps in SQLite (WAL).

    Args:
        path: The database file; created with its schema if missing.

    Raises:
        StoreError: If the file cannot be opened or is not a service database.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._local = threading.local()
        try:
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the service database {self._path}: {exc}") from None

    @property
    def path(self) -> Path:
        """Return the database file."""
        return self._path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """Yield this thread's connection (opened once per thread: the service's request threads are pooled)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            self._local.conn = conn
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def create_sweep(
        self,
        name: str,
        spec: str,
        n_trials: int,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        prepare: Callable[[str], None] | None = None,
    ) -> tuple[ServiceSweep, bool]:
        """Queue a sweep; return it and whether it is new.

        With an idempotency key already used for the same request, return that sweep (not new) instead of queueing
        another one.

        Args:
            name: The spec's name; the sweep's id is `<name>-<n>`.
            spec: The spec as submitted.
            n_trials: How many trials it has.
            idempotency_key: The client's key for this submission, if any.
            request_hash: A hash of the request, to tell a retry from another request under the same key.
            prepare: Called with the new sweep's id inside the transaction that queues it (the worker cannot claim
                it before `prepare` returns); if it raises, nothing is queued.

        Raises:
            KeyConflict: If the key was first used with a different request.
        """
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if idempotency_key is not None:
                    row = conn.execute("SELECT * FROM sweeps WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
                    if row is not None:
                        conn.execute("ROLLBACK")
                        sweep = ServiceSweep(*row)
                        if sweep.request_hash != request_hash:
                            raise KeyConflict(idempotency_key)
                        return sweep, False
                cursor = conn.execute(
                    "INSERT INTO sweeps (name, status, spec, n_trials, submitted, idempotency_key, request_hash)"
                    " VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                    (name, spec, n_trials, time.time(), idempotency_key, request_hash),
                )
                seq = cursor.lastrowid
                conn.execute("UPDATE sweeps SET id = ? WHERE seq = ?", (f"{name}-{seq}", seq))
                if prepare is not None:
                    prepare(f"{name}-{seq}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return self.get_sweep(f"{name}-{seq}"), True

    def find_key(self, idempotency_key: str) -> ServiceSweep | None:
        """Return the sweep first submitted with this idempotency key, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM sweeps WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        return None if row is None else ServiceSweep(*row)

    def get_sweep(self, sweep_id: str) -> ServiceSweep:
        """Return a sweep.

        Raises:
            KeyError: If there is no sweep `sweep_id`.
        """
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no sweep {sweep_id!r}")
        return ServiceSweep(*row)

    def list_sweeps(self, *, status: str | None = None) -> list[ServiceSweep]:
        """Return every sweep (or those with `status`), oldest first."""
        with self._connect() as conn:
            if status is None:
                rows = conn.execute("SELECT * FROM sweeps ORDER BY seq").fetchall()
            else:
                rows = conn.execute("SELECT * FROM sweeps WHERE status = ? ORDER BY seq", (status,)).fetchall()
        return [ServiceSweep(*row) for row in rows]

    def update(self, sweep_id: str, **fields: Any) -> None:
        """Set some fields of a sweep.

        Raises:
            KeyError: If there is no sweep `sweep_id`.
            ValueError: If a status is not one of `SWEEP_STATUSES`.
        """
        if "status" in fields and fields["status"] not in SWEEP_STATUSES:
            raise ValueError(f"`status` must be one of {SWEEP_STATUSES} (got {fields['status']!r})")
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as conn:
            cursor = conn.execute(f"UPDATE sweeps SET {columns} WHERE id = ?", (*fields.values(), sweep_id))
        if cursor.rowcount == 0:
            raise KeyError(f"no sweep {sweep_id!r}")

    def request_cancel(self, sweep_id: str) -> ServiceSweep:
        """Mark a sweep for cancelling; a queued one is cancelled at once. Return it as it is now.

        Raises:
            KeyError: If there is no sweep `sweep_id`.
        """
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE sweeps SET cancel_requested = 1 WHERE id = ? AND status NOT IN ('completed', 'failed', 'cancelled')", (sweep_id,))
            conn.execute("UPDATE sweeps SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'", (time.time(), sweep_id))
            conn.execute("COMMIT")
        return self.get_sweep(sweep_id)

    def requeue_running(self) -> list[str]:
        """Put back in the queue the sweeps a previous service left running (they resume); return their ids."""
        with self._connect() as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM sweeps WHERE status = 'running' ORDER BY seq")]
            conn.execute("UPDATE sweeps SET status = 'queued' WHERE status = 'running'")
        return ids

    def claim_next(self) -> ServiceSweep | None:
        """Mark the oldest queued sweep running and return it (None if the queue is empty)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT id FROM sweeps WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            conn.execute("UPDATE sweeps SET status = 'running', started = ?, runs = runs + 1 WHERE id = ?", (time.time(), row[0]))
            conn.execute("COMMIT")
        return self.get_sweep(row[0])

    def counts(self) -> dict[str, int]:
        """Return how many sweeps have each status."""
        with self._connect() as conn:
            rows = dict(conn.execute("SELECT status, COUNT(*) FROM sweeps GROUP BY status").fetchall())
        return {status: int(rows.get(status, 0)) for status in SWEEP_STATUSES}
