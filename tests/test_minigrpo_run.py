"""Runs of the mini trainer: verl's file formats, checkpoints, resume equivalence, signals, seeds, sweep configs.

Runs are tiny (a 60-step warm start, cached once per test run in the shared ABLATE_CACHE_DIR, batches of 8 prompts).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from orchestrator.minigrpo import checkpoint, numerics
from orchestrator.minigrpo.config import compose
from orchestrator.minigrpo.task import TaskSpec, make_prompts
from orchestrator.minigrpo.trainer import train
from orchestrator.minigrpo.tracking import console_line, file_logger_path, jsonl_line
from orchestrator.minigrpo.warmstart import WarmStartSpec, load_or_train

ROOT = Path(__file__).resolve().parents[1]
A = "actor_rollout_ref.actor."
TINY = [
    "mini.warm_start.steps=60",
    "mini.task.n_train_prompts=400",
    "mini.task.n_val_prompts=32",
    "data.train_batch_size=8",
    f"{A}ppo_mini_batch_size=8",
    "trainer.test_freq=2",
    "trainer.logger=[file]",
    "trainer.resume_mode=disable",
]
STEP_METRICS = [
    "critic/score/mean", "critic/score/max", "critic/score/min", "actor/entropy", "actor/pg_loss",
    "actor/grad_norm", "actor/lr", "actor/pg_clipfrac", "actor/ppo_kl", "response_length/mean",
    "response_length/max", "response_length/min", "response_length/clip_ratio", "critic/advantages/max",
    "critic/advantages/min", "critic/advantages/mean", "perf/throughput", "timing_s/step",
]
VAL_METRICS = ["val-core/mini/reward/mean@1", "val-aux/mini/correct/mean@1"]
SWEEP_CONFIGS = {
    "original": [],
    "cosine": [f"{A}optim.lr_scheduler_type=cosine", f"{A}optim.lr_warmup_steps=1"],
    "kl": [f"{A}use_kl_loss=true", f"{A}kl_loss_coef=0.01", f"{A}kl_loss_type=low_var_kl"],
    "entropy": [f"{A}entropy_coeff=0.01"],
    "n4": ["actor_rollout_ref.rollout.n=4"],
}


@pytest.fixture
def minigrpo_workdir(minigrpo_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with ABLATE_CACHE_DIR set and the metrics file at <tmp>/metrics.jsonl."""
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(minigrpo_cache))
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith(("perf/", "timing_s/"))}


def _run(workdir: Path, *overrides: str) -> list[dict[str, Any]]:
    train(compose([*TINY, *overrides]))
    return _records(workdir / "metrics.jsonl")


def test_jsonl_line_writes_nan_and_inf_as_null() -> None:
    line = jsonl_line(3, {"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 1.5, "e": 2})
    assert line == b'{"step":3,"data":{"a":null,"b":null,"c":null,"d":1.5,"e":2}}\n'


def test_console_line_has_verl_format() -> None:
    assert console_line(7, {"actor/lr": 0.001, "name": "x", "n": 2}) == "step:7 - actor/lr:0.001 - n:2"


def test_file_logger_path_follows_verl_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path))
    assert file_logger_path("proj", "exp") == tmp_path / "proj" / "exp.jsonl"
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "x.jsonl"))
    assert file_logger_path("proj", "exp") == tmp_path / "x.jsonl"


def test_train_writes_one_verl_record_per_step(minigrpo_workdir: Path) -> None:
    (minigrpo_workdir / "metrics.jsonl").write_text("stale line from an earlier attempt\n")
    records = _run(minigrpo_workdir, "trainer.total_training_steps=4")
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    assert all(set(r) == {"step", "data"} for r in records)
    assert sorted(records[0]["data"]) == sorted(
        ["val-core/mini/reward/mean@1", "val-aux/mini/correct/mean@1", "val-aux/mini/well_formed/mean@1",
         "val-aux/mini/response_length/mean@1"]
    )
    for record in records[1:]:
        assert set(STEP_METRICS) <= set(record["data"])
        assert "actor/kl_loss" not in record["data"]
        assert "actor/entropy_loss" not in record["data"]
    assert [set(VAL_METRICS) <= set(r["data"]) for r in records] == [True, False, True, False, True]
    text = (minigrpo_workdir / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert all(0.0 <= r["data"]["val-aux/mini/correct/mean@1"] <= 1.0 for r in records if r["step"] % 2 == 0)


def test_train_console_logger_prints_step_lines(minigrpo_workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(compose([*TINY, "trainer.total_training_steps=2", "trainer.logger=[console]"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step:")]
    assert [line.split(" - ")[0] for line in lines] == ["step:0", "step:1", "step:2"]
    assert " - actor/entropy:" in lines[1]
    assert not (minigrpo_workdir / "metrics.jsonl").exists()


def test_train_exports_ray_kwargs_env_vars(minigrpo_workdir: Path) -> None:
    target = minigrpo_workdir / "via-ray-kwargs.jsonl"
    train(compose([*TINY, "trainer.total_training_steps=1",
                   f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={target}"]))
    assert [r["step"] for r in _records(target)] == [0, 1]


def test_train_checkpoint_layout_and_pruning(minigrpo_workdir: Path) -> None:
    _run(minigrpo_workdir, "trainer.total_training_steps=5", "trainer.save_freq=2",
         "trainer.max_actor_ckpt_to_keep=2", "trainer.default_local_dir=ckpt")
    root = minigrpo_workdir / "ckpt"
    assert (root / "latest_checkpointed_iteration.txt").read_text() == "5"
    assert sorted(p.name for p in root.iterdir()) == [
        "global_step_4", "global_step_5", "latest_checkpointed_iteration.txt"
    ]
    actor = root / "global_step_5" / "actor"
    assert sorted(p.name for p in actor.iterdir()) == [
        "extra_state_world_size_1_rank_0.pt", "model_world_size_1_rank_0.pt", "optim_world_size_1_rank_0.pt"
    ]
    assert (root / "global_step_5" / "data.pt").exists()
    state = checkpoint.load(root / "global_step_5")
    assert state.step == 5 and state.scheduler_steps == 5
    assert set(state.rng) == {"rollout", "torch"}


def test_each_evaluation_scores_the_weights_of_its_own_step(minigrpo_workdir: Path) -> None:
    """Evaluations run beside the next steps' training: each record still holds its own step's evaluation, exactly
    as an evaluation of that step's checkpoint made afterwards gives it, and records stay in step order."""
    from orchestrator.minigrpo.model import TinyTransformer, load_rounded
    from orchestrator.minigrpo.trainer import _build, _validate

    overrides = ["trainer.total_training_steps=6", "trainer.save_freq=2", "trainer.max_actor_ckpt_to_keep=3",
                 "trainer.default_local_dir=ckpt", f"{A}optim.lr=5e-3"]
    records = _run(minigrpo_workdir, *overrides)
    assert [r["step"] for r in records] == list(range(7))
    run = _build(compose([*TINY, *overrides]))
    sampler = TinyTransformer(run.policy.spec)
    scores = []
    for step in (2, 4, 6):
        run.policy.load_state_dict(checkpoint.load(minigrpo_workdir / "ckpt" / f"global_step_{step}").model)
        load_rounded(sampler, run.policy, "bfloat16")
        assert _validate(run, sampler) == {k: records[step]["data"][k] for k in _validate(run, sampler)}, step
        scores.append(records[step]["data"][VAL_METRICS[0]])
    assert len(set(scores)) > 1, "the weights changed between evaluations"
    assert all(records[step]["data"]["timing_s/testing"] > 0 for step in (2, 4, 6))


def test_train_without_save_freq_writes_no_checkpoint(minigrpo_workdir: Path) -> None:
    _run(minigrpo_workdir, "trainer.total_training_steps=2", "trainer.default_local_dir=ckpt")
    assert not (minigrpo_workdir / "ckpt").exists()


def test_train_same_seed_gives_identical_metrics(minigrpo_workdir: Path) -> None:
    first = _run(minigrpo_workdir, "trainer.total_training_steps=3")
    second = _run(minigrpo_workdir, "trainer.total_training_steps=3")
    assert [_comparable(r["data"]) for r in first] == [_comparable(r["data"]) for r in second]


@pytest.mark.parametrize("seed_key", ["actor_rollout_ref.rollout.seed", "data.seed"])
def test_train_trial_seeds_change_the_run(minigrpo_workdir: Path, seed_key: str) -> None:
    base = _run(minigrpo_workdir, "trainer.total_training_steps=3")
    other = _run(minigrpo_workdir, "trainer.total_training_steps=3", f"{seed_key}=7")
    assert base[0] == other[0], "step-0 validation depends on the warm start only"
    assert [r["data"]["actor/entropy"] for r in base[1:]] != [r["data"]["actor/entropy"] for r in other[1:]]


@pytest.mark.parametrize("name", list(SWEEP_CONFIGS))
def test_train_sweep_config_short_run(minigrpo_workdir: Path, name: str) -> None:
    records = _run(minigrpo_workdir, "trainer.total_training_steps=3", *SWEEP_CONFIGS[name])
    steps = [r["data"] for r in records[1:]]
    assert len(steps) == 3
    for data in steps:
        assert all(math.isfinite(data[key]) for key in STEP_METRICS)
        assert 0.0 <= data["actor/entropy"]
        assert data["actor/grad_norm"] >= 0.0
        assert ("actor/kl_loss" in data) == (name == "kl")
        assert ("actor/entropy_loss" in data) == (name == "entropy")
    lrs = [data["actor/lr"] / compose([]).actor_rollout_ref.actor.optim.lr for data in steps]
    if name == "cosine":
        # warmup 1 then a half cosine over the remaining 2 steps; verl logs the LR after its scheduler step.
        assert lrs == pytest.approx([1.0, 0.5, 0.0])
    else:
        assert lrs == pytest.approx([1.0] * 3)
    if name == "kl":
        assert steps[0]["actor/kl_loss"] == pytest.approx(0.0, abs=1e-7), "the first update starts at the reference"
        assert steps[-1]["actor/kl_loss"] > 0.0
    if name == "n4":
        assert steps[0]["perf/total_num_tokens"] > 32 * 9


def test_warm_start_is_cached_per_task_seed(tmp_path: Path) -> None:
    from orchestrator.minigrpo.model import ModelSpec

    task = TaskSpec()
    spec = ModelSpec(vocab_size=14, max_positions=22, d_model=16, n_layers=1, n_heads=2)
    prompts = make_prompts(task, 64, torch.Generator().manual_seed(0))
    warm = WarmStartSpec(steps=3, batch_size=8, seed=0)
    state, cached = load_or_train(tmp_path, task, spec, warm, prompts)
    again, cached_again = load_or_train(tmp_path, task, spec, warm, prompts)
    assert (cached, cached_again) == (False, True)
    assert all(torch.equal(state[k], again[k]) for k in state)
    _, other_seed_cached = load_or_train(tmp_path, task, spec, WarmStartSpec(steps=3, batch_size=8, seed=1), prompts)
    assert other_seed_cached is False
    assert len(list(tmp_path.glob("warmstart-*.pt"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_warm_start_wrong_answers_replace_only_the_answer_digit() -> None:
    from orchestrator.minigrpo.task import EOS, EQ, make_targets
    from orchestrator.minigrpo.warmstart import _corrupt_answers

    prompts = make_prompts(TaskSpec(), 4000, torch.Generator().manual_seed(0))
    chain_lengths = prompts.n_digits - 1 - torch.randint(0, 2, (len(prompts),), generator=torch.Generator())
    targets = make_targets(prompts, chain_lengths, 12)
    corrupted = _corrupt_answers(targets, chain_lengths, 0.25, torch.Generator().manual_seed(1))
    rows = torch.arange(len(prompts))
    changed = (corrupted != targets).any(dim=1)
    assert 0.22 < changed.float().mean() < 0.28
    assert torch.equal((corrupted != targets).sum(dim=1)[changed], torch.ones(int(changed.sum()), dtype=torch.long))
    answer = corrupted[rows, chain_lengths + 1]
    assert torch.equal(answer[~changed], prompts.answers[~changed])
    assert bool((answer[changed] != prompts.answers[changed]).all()) and int(answer.max()) <= 9
    assert bool((corrupted[rows, chain_lengths] == EQ).all()) and bool((corrupted[rows, chain_lengths + 2] == EOS).all())


def test_warm_start_cache_key_depends_on_wrong_answer_frac() -> None:
    from orchestrator.minigrpo.model import ModelSpec
    from orchestrator.minigrpo.warmstart import cache_key

    task, model = TaskSpec(), ModelSpec(vocab_size=14, max_positions=22)
    keys = {cache_key(task, model, WarmStartSpec(wrong_answer_frac=frac), 5000) for frac in (0.0, 0.15, 0.2)}
    assert len(keys) == 3


def test_warm_start_cache_key_depends_on_torch_version_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.minigrpo.model import ModelSpec
    from orchestrator.minigrpo.warmstart import cache_key

    args = (TaskSpec(), ModelSpec(vocab_size=14, max_positions=22), WarmStartSpec(), 5000)
    base = cache_key(*args)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        other_threads = cache_key(*args)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert len({base, other_threads, cache_key(*args)}) == 3


def _cli_run(tmp_path: Path, name: str, **env: str) -> list[dict[str, Any]]:
    """Run the CLI trainer (10 steps, a 30-step warm start in a cache of its own) under `env`; return its metrics."""
    overrides = [*TINY, "mini.warm_start.steps=30", "trainer.total_training_steps=10", "trainer.save_freq=-1",
                 f"{A}optim.lr=5e-3"]
    proc = _cli(tmp_path, tmp_path / "cache", name, overrides, env)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return [_comparable(r["data"]) for r in _records(tmp_path / f"{name}.jsonl")]


@pytest.mark.skipif(not numerics._has_avx2(), reason="the kernels are pinned only on a CPU with AVX2 and FMA")
def test_a_seeds_run_does_not_depend_on_the_kernels_the_cpu_offers(tmp_path: Path) -> None:
    """A machine whose torch would pick other kernels (here scalar ones, as on a CPU with neither AVX2 nor AVX-512)
    gets the same run: the trainer pins its own. Without the pin (the control) the same seed gives another run."""
    pinned = _cli_run(tmp_path, "pinned")
    elsewhere = _cli_run(tmp_path, "elsewhere", ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    assert elsewhere == pinned
    native = _cli_run(tmp_path, "native", ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE",
                        ABLATE_MINIGRPO_NATIVE_NUMERICS="1")
    # The control: other kernels sum in another order, and the entropies and losses differ from the first step on.
    assert [r["actor/entropy"] for r in native[1:]] != [r["actor/entropy"] for r in pinned[1:]]
    assert len({p.name for p in (tmp_path / "cache").glob("warmstart-*.pt")}) == 2, "one warm start per kernel set"


def test_one_mini_batch_update_reuses_the_old_log_prob_pass(minigrpo_workdir: Path) -> None:
    """One epoch of one mini-batch: the update's ratio is exactly 1 (its forward pass is the old-log-prob pass)."""
    steps = [r["data"] for r in _run(minigrpo_workdir, "trainer.total_training_steps=4")[1:]]
    assert all(s["actor/ppo_kl"] == 0.0 and s["actor/pg_clipfrac"] == 0.0 for s in steps)
    (minigrpo_workdir / "metrics.jsonl").unlink()
    two = [r["data"] for r in _run(minigrpo_workdir, "trainer.total_training_steps=4", f"{A}ppo_mini_batch_size=4")]
    assert any(s["actor/ppo_kl"] != 0.0 for s in two[1:]), "the second mini-batch sees updated weights"


def _cli(
    tmp_path: Path, cache: Path, name: str, overrides: list[str], extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = dict(os.environ, ABLATE_CACHE_DIR=str(cache), VERL_FILE_LOGGER_PATH=str(tmp_path / f"{name}.jsonl"),
               PYTHONPATH=str(ROOT), **(extra_env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.minigrpo", *overrides, f"trainer.default_local_dir={tmp_path / name}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache"  # fresh: both runs start at once and share one warm start under the file lock
    overrides = [
        *TINY, "data.train_batch_size=16", f"{A}ppo_mini_batch_size=8", f"{A}ppo_epochs=2", f"{A}shuffle=true",
        "actor_rollout_ref.rollout.n=4", f"{A}optim.lr_scheduler_type=cosine", f"{A}optim.lr_warmup_steps=3",
        f"{A}use_kl_loss=true", f"{A}kl_loss_coef=0.05", f"{A}entropy_coeff=0.01",
        "trainer.total_training_steps=20", "trainer.save_freq=5", "trainer.test_freq=5",
        "trainer.logger=[console,file]", "trainer.resume_mode=auto",
    ]
    full = _cli(tmp_path, cache, "full", overrides)
    cut = _cli(tmp_path, cache, "cut", overrides)
    assert cut.stdout is not None
    for line in cut.stdout:
        if line.startswith("step:12 "):
            break
    cut.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    cut.communicate(timeout=30)
    assert time.monotonic() - signalled < 5.0
    assert cut.returncode == 128 + signal.SIGTERM
    _, full_stderr = full.communicate(timeout=300)  # drains its pipes: a full pipe would block the trainer
    assert full.returncode == 0, full_stderr

    resumed_from = int((tmp_path / "cut" / "latest_checkpointed_iteration.txt").read_text())
    assert resumed_from in (10, 15)
    resumed = _cli(tmp_path, cache, "cut", overrides)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr

    uninterrupted = {r["step"]: _comparable(r["data"]) for r in _records(tmp_path / "full.jsonl")}
    after = _records(tmp_path / "cut.jsonl")
    assert [r["step"] for r in after] == list(range(resumed_from, 21))
    assert after[0]["data"] == {k: uninterrupted[resumed_from][k] for k in after[0]["data"]}, "re-validation at N"
    for record in after[1:]:
        assert _comparable(record["data"]) == uninterrupted[record["step"]], f"step {record['step']}"
    assert len(list(cache.glob("warmstart-*.pt"))) == 1
