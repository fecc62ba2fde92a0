"""The sweep store: schema and identity checks, idempotent metrics, NaN/inf, concurrent writers, missing ids."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.design import Trial
from orchestrator.errors import StoreError
from orchestrator.history import StepMetrics
from orchestrator.store import SCHEMA_VERSION, TRIAL_STATUSES, SQLiteStore, status_for_stop_reason


def _trial(trial_id: str, seed: int = 1) -> Trial:
    return Trial(
        id=trial_id,
        name=f"lr=const_kl=0_s{seed}",
        point="lr=const_kl=0",
        levels={"lr_schedule": "const", "kl": "0"},
        values={"lr_schedule": {"type": "constant", "lr": 1e-3}, "kl": 0},
        seed=seed,
        overrides={"actor_rollout_ref.actor.optim.lr": 1e-3, "data.seed": seed},
    )


def _store(path: str | Path = ":memory:", trial_ids: tuple[str, ...] = ("t1", "t2")) -> SQLiteStore:
    store = SQLiteStore(path)
    if not store.list_sweeps():
        store.create_sweep("demo", "name: demo\n")
        store.create_trials("demo", [_trial(tid, seed) for seed, tid in enumerate(trial_ids, 1)])
    return store


def test_store_new_file_has_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    _store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sweeps", "trials", "metrics", "events", "checkpoints"} <= tables


def test_store_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    with _store(path) as store:
        store.append_metrics("t1", [StepMetrics(1, {"a": 1.0})])
    with SQLiteStore(path) as store:
        assert store.get_history("t1") == [StepMetrics(1, {"a": 1.0})]
        assert store.get_sweep("demo").spec == "name: demo\n"


def test_store_append_metrics_same_step_and_key_twice_keeps_one_row_with_latest_value(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    store = _store(path)
    store.append_metrics("t1", [StepMetrics(10, {"loss": 1.0, "score": 0.5}), StepMetrics(11, {"loss": 0.9})])
    store.append_metrics("t1", [StepMetrics(10, {"loss": 2.0})])  # a retried attempt logs step 10 again
    rows = sqlite3.connect(path).execute("SELECT step, key, value FROM metrics ORDER BY step, key").fetchall()
    assert rows == [(10, "loss", 2.0), (10, "score", 0.5), (11, "loss", 0.9)]
    assert store.get_history("t1") == [StepMetrics(10, {"loss": 2.0, "score": 0.5}), StepMetrics(11, {"loss": 0.9})]
    assert store.get_trial("t1").last_step == 11


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.5, 1e300, 5e-324])
def test_store_metric_value_round_trips(value: float) -> None:
    store = _store()
    store.append_metrics("t1", [StepMetrics(3, {"actor/grad_norm": value})])
    (point,) = store.get_history("t1")
    back = point.metrics["actor/grad_norm"]
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_store_none_value_is_stored_as_nan() -> None:
    store = _store()
    store.append_metrics("t1", [StepMetrics(3, {"x": None})])  # type: ignore[dict-item]
    assert math.isnan(store.get_history("t1")[0].metrics["x"])


def test_store_nan_replaced_by_a_number_and_back() -> None:
    store = _store()
    store.append_metrics("t1", [StepMetrics(3, {"x": math.nan})])
    store.append_metrics("t1", [StepMetrics(3, {"x": 1.0})])
    assert store.get_history("t1")[0].metrics["x"] == 1.0
    store.append_metrics("t1", [StepMetrics(3, {"x": math.nan})])
    assert math.isnan(store.get_history("t1")[0].metrics["x"])


def test_store_get_history_orders_steps_and_leaves_unlogged_metrics_absent() -> None:
    store = _store()
    store.append_metrics("t1", [StepMetrics(20, {"val": 0.7, "loss": 0.1}), StepMetrics(5, {"loss": 0.3})])
    store.append_metrics("t1", [StepMetrics(10, {"loss": 0.2})])
    assert store.get_history("t1") == [
        StepMetrics(5, {"loss": 0.3}),
        StepMetrics(10, {"loss": 0.2}),
        StepMetrics(20, {"loss": 0.1, "val": 0.7}),
    ]
    assert store.get_history("t1", keys=["val"]) == [StepMetrics(20, {"val": 0.7})]
    assert store.get_history("t2") == []


def test_store_delete_metrics_after_step_drops_a_superseded_attempt() -> None:
    store = _store()
    store.append_metrics("t1", [StepMetrics(step, {"loss": float(step)}) for step in range(1, 8)])
    assert store.delete_metrics("t1", after_step=4) == 3
    assert [p.step for p in store.get_history("t1")] == [1, 2, 3, 4]
    assert store.get_trial("t1").last_step == 4


def test_store_create_trials_again_keeps_their_status_and_results() -> None:
    store = _store()
    store.set_trial_status("t1", "running")
    store.set_trial_best("t1", 20, 0.8)
    added = store.create_trials("demo", [_trial("t1"), _trial("t2", 2), _trial("t3", 3)])
    assert added == ["t3"]
    record = store.get_trial("t1")
    assert (record.status, record.best_step, record.best_score) == ("running", 20, 0.8)
    assert record.levels == {"lr_schedule": "const", "kl": "0"}
    assert record.overrides["actor_rollout_ref.actor.optim.lr"] == 1e-3
    assert [t.id for t in store.list_trials("demo")] == ["t1", "t2", "t3"]


def test_store_trial_id_under_another_sweep_is_refused() -> None:
    store = _store()
    store.create_sweep("other", "name: other\n")
    with pytest.raises(ValueError, match="`t1` already belongs to sweep `demo`"):
        store.create_trials("other", [_trial("t1")])


@pytest.mark.parametrize(
    ("reason", "status"),
    [("completed", "completed"), ("collapse:score_drop", "stopped"), ("asha", "stopped"), ("failed", "failed"),
     ("cancelled", "cancelled")],
)  # fmt: skip
def test_store_set_trial_stop_records_reason_step_evidence_and_status(reason: str, status: str) -> None:
    store = _store()
    evidence = {"best": 2.79, "values": [1.3, math.inf], "nan": math.nan}
    store.set_trial_stop("t1", reason, step=60, evidence=evidence)
    record = store.get_trial("t1")
    assert (record.status, record.stop_reason, record.stop_step) == (status, reason, 60)
    assert record.stop_evidence is not None
    assert record.stop_evidence["values"] == [1.3, math.inf]
    assert math.isnan(record.stop_evidence["nan"])
    assert status_for_stop_reason(reason) == status


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.set_trial_status("t1", "done"), "`status` has to be one of"),
        (lambda s: s.set_trial_stop("t1", "collapse"), "`reason` has to be one of"),
        (lambda s: s.set_trial_stop("t1", "timeout"), "`reason` has to be one of"),
        (lambda s: s.set_sweep_status("demo", "stopped"), "`status` has to be one of"),
        (lambda s: s.set_checkpoint("t1", "worst", 1, "/x"), "`role` has to be one of"),
        (lambda s: s.append_event("t1", "Started"), "`kind` must be lower_snake_case"),
        (lambda s: s.set_trial_best("t1", 3, math.nan), "must not be NaN"),
        (lambda s: s.create_sweep("demo", "again"), "sweep `demo` already exists"),
    ],
)
def test_store_invalid_values_raise_value_error(call: Callable[[SQLiteStore], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(_store())


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_sweep("nope"),
        lambda s: s.set_sweep_status("nope", "running"),
        lambda s: s.list_trials("nope"),
        lambda s: s.summary("nope"),
        lambda s: s.create_trials("nope", [_trial("t9")]),
        lambda s: s.get_trial("nope"),
        lambda s: s.set_trial_status("nope", "running"),
        lambda s: s.set_trial_stop("nope", "asha", step=3),
        lambda s: s.set_trial_best("nope", 3, 1.0),
        lambda s: s.set_trial_collapse("nope", 3),
        lambda s: s.set_trial_attempts("nope", 2),
        lambda s: s.set_trial_stderr_tail("nope", "boom"),
        lambda s: s.append_metrics("nope", [StepMetrics(1, {"a": 1.0})]),
        lambda s: s.append_metrics("nope", []),
        lambda s: s.get_history("nope"),
        lambda s: s.delete_metrics("nope", after_step=1),
        lambda s: s.append_event("nope", "started"),
        lambda s: s.list_events("nope"),
        lambda s: s.set_checkpoint("nope", "best", 1, "/x"),
        lambda s: s.get_checkpoints("nope"),
    ],
)
def test_store_missing_id_raises_key_error_naming_it(call: Callable[[SQLiteStore], Any]) -> None:
    store = _store()
    with pytest.raises(KeyError, match="`nope`"):
        call(store)
    assert store.summary("demo")["pending"] == 2  # nothing half-written


def test_store_summary_counts_every_status() -> None:
    store = _store(trial_ids=("a", "b", "c", "d"))
    store.set_trial_status("a", "running")
    store.set_trial_stop("b", "collapse:dead", step=40)
    store.set_trial_stop("c", "completed", step=250)
    assert store.summary("demo") == {
        **dict.fromkeys(TRIAL_STATUSES, 0),
        "pending": 1,
        "running": 1,
        "stopped": 1,
        "completed": 1,
    }
    assert [t.id for t in store.list_trials("demo", status="stopped")] == ["b"]


def test_store_trial_fields_set_and_read_back() -> None:
    store = _store()
    store.set_trial_attempts("t1", 2)
    store.set_trial_collapse("t1", 60)
    store.set_trial_stderr_tail("t1", "Traceback ...\nRuntimeError: boom\n")
    record = store.get_trial("t1")
    assert (record.attempts, record.collapse_step) == (2, 60)
    assert record.stderr_tail is not None and record.stderr_tail.endswith("boom\n")


def test_store_events_come_back_in_append_order() -> None:
    store = _store()
    store.append_event("t1", "started", attempt=0, data={"pid": 123})
    store.append_event("t1", "checkpoint_kept", attempt=0, data={"role": "best", "step": 20})
    store.append_event("t1", "retried", attempt=1)
    events = store.list_events("t1")
    assert [(e.kind, e.attempt) for e in events] == [("started", 0), ("checkpoint_kept", 0), ("retried", 1)]
    assert events[0].data == {"pid": 123}
    assert events[0].id < events[1].id < events[2].id
    assert [e.kind for e in store.list_events("t1", kind="retried")] == ["retried"]
    assert store.list_events("t2") == []


def test_store_checkpoint_roles_are_replaced_not_added() -> None:
    store = _store()
    store.set_checkpoint("t1", "best", 10, "/ckpt/best/global_step_10")
    store.set_checkpoint("t1", "latest", 15, "/ckpt/global_step_15")
    store.set_checkpoint("t1", "best", 20, "/ckpt/best/global_step_20")
    kept = store.get_checkpoints("t1")
    assert {role: (c.step, c.path) for role, c in kept.items()} == {
        "best": (20, "/ckpt/best/global_step_20"),
        "latest": (15, "/ckpt/global_step_15"),
    }


def test_store_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    first = _store(path)
    second = SQLiteStore(path)
    first.append_metrics("t1", [StepMetrics(1, {"a": 1.0})])
    second.append_metrics("t1", [StepMetrics(2, {"a": 2.0})])
    assert [p.step for p in first.get_history("t1")] == [1, 2]
    assert second.get_trial("t1").last_step == 2


def _write_many(path: str, trial_id: str, n_steps: int) -> None:
    store = SQLiteStore(path)
    for step in range(n_steps):
        store.append_metrics(trial_id, [StepMetrics(step, {f"m{k}": step + k / 10 for k in range(20)})])
        store.append_metrics("shared", [StepMetrics(step, {trial_id: float(step)})])
        store.append_event(trial_id, "progress", data={"step": step})
        store.set_trial_status(trial_id, "running")
    store.close()


def test_store_two_processes_write_at_once_without_lock_errors(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    _store(path, trial_ids=("w1", "w2", "shared")).close()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_many, args=(str(path), tid, 150)) for tid in ("w1", "w2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    store = SQLiteStore(path)
    for tid in ("w1", "w2"):
        history = store.get_history(tid)
        assert len(history) == 150 and all(len(p.metrics) == 20 for p in history)
        assert len(store.list_events(tid)) == 150
    assert all(set(p.metrics) == {"w1", "w2"} for p in store.get_history("shared"))


def test_store_refuses_a_newer_schema_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "sweep.db"
    _store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"{path} was written by a newer ablate"):
        SQLiteStore(path)


def test_store_refuses_another_sqlite_database_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"{path} is not an ablate store"):
        SQLiteStore(path)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("name: demo\n" * 200)
    with pytest.raises(StoreError, match=f"{path} is not an ablate store"):
        SQLiteStore(path)


def test_store_missing_folder_raises_store_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "sweep.db"
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path)
