"""wandb: each trial's run is grouped by configuration, the sweep is its job type, levels and seed are in its config.

The offline run's own record (`run-<id>.wandb`, a LevelDB-style log of protobuf records) is read back, so the test
checks what W&B itself would show, not only the arguments passed to `wandb.init`.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.design import expand
from orchestrator.engine._wandb import trial_group, wandb_init_kwargs
from orchestrator.spec import parse_spec

SPEC = {
    "name": "wb",
    "trainer": {"backend": "mini", "base": "configs/mini/original.yaml"},
    "factors": {"kl": [{"use_kl_loss": False}, {"use_kl_loss": True, "coef": 0.01, "type": "low_var_kl"}], "rollout_n": [2, 8]},
    "seeds": 2,
    "budget": {"max_steps": 10, "eval_every": 5, "save_every": 5},
}


def _trials() -> list[Any]:
    root = Path(__file__).resolve().parents[1]
    spec = parse_spec({**SPEC, "trainer": {**SPEC["trainer"], "base": str(root / SPEC["trainer"]["base"])}}, source="wb.yaml")
    return expand(spec).trials


def read_wandb_run(run_file: Path) -> dict[str, Any]:
    """Return the run record of an offline wandb run file: group, job type, name and config (key -> value)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B", data[:8]
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        # A record header never straddles a block: the block's tail is padding.
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            records.append(chunk)
            chunk = b""
    for raw in records:
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            run = record.run
            config = {item.key: json.loads(item.value_json) for item in run.config.update}
            return {"group": run.run_group, "job_type": run.job_type, "name": run.display_name, "config": config}
    raise AssertionError(f"{run_file}: no run record")


def test_wandb_init_kwargs_group_seeds_of_one_configuration(tmp_path: Path) -> None:
    trials = _trials()
    assert len(trials) == 8  # a grid of 2 x 2 configurations, 2 seeds each
    kwargs = {t.id: wandb_init_kwargs({"project": "p"}, sweep="wb", trial=t, workdir=tmp_path / t.name) for t in trials}
    groups: dict[str, set[int]] = {}
    for t in trials:
        k = kwargs[t.id]
        groups.setdefault(k["group"], set()).add(t.seed)
        assert k["job_type"] == "wb" and k["mode"] == "offline" and k["name"] == t.name
        assert k["config"]["ablate/seed"] == t.seed and k["config"]["ablate/levels"] == t.levels
        assert k["config"]["ablate/level/kl"] == t.levels["kl"] and k["config"]["ablate/configuration"] == k["group"]
        assert k["config"]["actor_rollout_ref.rollout.n"] == int(t.levels["rollout_n"])
    # One group per configuration, each holding both seeds; the group is the report's configuration name.
    assert groups == {f"kl={kl}, rollout_n={n}": {1, 2} for kl in ("0", "0.01") for n in ("2", "8")}
    assert len({k["id"] for k in kwargs.values()}) == 8


def test_wandb_group_keeps_rescue_branches_apart_from_seeds() -> None:
    from dataclasses import replace

    trial = _trials()[0]
    branch = replace(trial, id="b" * 12, parent=trial.id, from_step=20, remedy="kl=0.1")
    assert trial_group(trial) == "kl=0, rollout_n=2"
    assert trial_group(branch) == "kl=0, rollout_n=2 | rescue kl=0.1"
    assert wandb_init_kwargs({"project": "p"}, sweep="wb", trial=branch, workdir=Path("."))["config"]["ablate/parent"] == trial.id


def test_wandb_offline_run_records_group_job_type_levels_and_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    trials = _trials()[:2]
    for t in trials:
        run = wandb.init(**wandb_init_kwargs({"project": "p", "mode": "offline"}, sweep="wb", trial=t, workdir=tmp_path / t.name))
        run.log({"val-core/mini/reward/mean@1": 0.5}, step=5)
        run.finish()
    seen = []
    for t in trials:
        (run_file,) = (tmp_path / t.name / "wandb").glob("offline-run-*/run-*.wandb")
        # wandb's service process may still be writing the file just after `finish()` returns (seen once in ten).
        deadline = time.monotonic() + 20
        while True:
            try:
                record = read_wandb_run(run_file)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert record["job_type"] == "wb" and record["name"] == t.name
        assert record["config"]["ablate/seed"] == t.seed and record["config"]["ablate/levels"] == t.levels
        seen.append(record["group"])
    # The two seeds of the first configuration share one group.
    assert [t.seed for t in trials] == [1, 2] and seen == ["kl=0, rollout_n=2"] * 2
