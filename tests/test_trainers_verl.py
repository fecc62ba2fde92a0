"""The verl builder: golden argv, Hydra quoting, and validation against the installed verl's real config."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.design import Trial, expand
from orchestrator.spec import load_spec
from orchestrator.trainers import RunContext, get_trainer
from orchestrator.trainers._hydra import format_override, parse_override
from orchestrator.trainers.verl import VerlTrainer, _type_problem, _VerlChecker, verl_config_dir

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: golden
trainer:
  backend: verl
  overrides:
    actor_rollout_ref.model.path: Qwen/Qwen3-4B
    actor_rollout_ref.rollout.name: vllm
    algorithm.adv_estimator: grpo
    data.train_files: ~/data/train.parquet
    data.train_batch_size: 64
    actor_rollout_ref.actor.ppo_mini_batch_size: 32
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu: 4
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu: 4
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu: 4
factors:
  lr_schedule: [{type: cosine, lr: 1e-6, warmup_steps: 50, min_lr_ratio: 0.1}]
  kl: [{use_kl_loss: true, coef: 0.01, type: low_var_kl}]
  entropy_coeff: [0.01]
  rollout_n: [8]
seeds: [3]
budget: {max_steps: 200, eval_every: 10, save_every: 5}
resources: {gpus: 8}
"""

GOLDEN = [
    "actor_rollout_ref.model.path=Qwen/Qwen3-4B",
    "actor_rollout_ref.rollout.name=vllm",
    "algorithm.adv_estimator=grpo",
    "data.train_files='~/data/train.parquet'",
    "data.train_batch_size=64",
    "actor_rollout_ref.actor.ppo_mini_batch_size=32",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
    "trainer.n_gpus_per_node=8",
    "trainer.nnodes=1",
    "trainer.total_training_steps=200",
    "trainer.total_epochs=100000",
    "trainer.test_freq=10",
    "trainer.save_freq=5",
    "actor_rollout_ref.actor.optim.lr=1e-06",
    "actor_rollout_ref.actor.optim.lr_scheduler_type=cosine",
    "actor_rollout_ref.actor.optim.lr_warmup_steps=50",
    "actor_rollout_ref.actor.optim.min_lr_ratio=0.1",
    "actor_rollout_ref.actor.optim.num_cycles=0.5",
    "actor_rollout_ref.actor.use_kl_loss=true",
    "actor_rollout_ref.actor.kl_loss_coef=0.01",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff=0.01",
    "actor_rollout_ref.rollout.n=8",
    "data.seed=3",
    "actor_rollout_ref.rollout.seed=3",
    "actor_rollout_ref.actor.data_loader_seed=3",
    "actor_rollout_ref.actor.fsdp_config.seed=3",
    "trainer.logger=[console,file]",
    "trainer.project_name=golden",
    "trainer.experiment_name='lr=cos_kl=0.01_ent=0.01_n=8_s3'",
    "trainer.default_local_dir=/sweeps/golden/trials/t/checkpoints",
    "trainer.resume_mode=auto",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=/sweeps/golden/trials/t/metrics.2.jsonl",
    "+ray_kwargs.ray_init.address=local",
]


def _trial(tmp_path: Path, text: str = SPEC) -> Trial:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    (trial,) = expand(load_spec(path)).trials
    return trial


def _ctx(trial: Trial, attempt: int = 0) -> RunContext:
    return RunContext(workdir=Path("/sweeps/golden/trials/t"), project="golden", attempt=attempt)


def _with(trial: Trial, **changes: Any) -> Trial:
    overrides = {**trial.overrides}
    tag = "-".join(sorted(changes))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is _DROP:
            overrides.pop(key)
        else:
            overrides[key] = value
    return dataclasses.replace(trial, id=f"{trial.id}-{tag}", overrides=overrides)


_DROP = object()


def test_verl_command_is_the_golden_argv(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    command = VerlTrainer(python="python").command(trial, _ctx(trial, attempt=2))
    assert list(command.argv) == ["python", "-m", "verl.trainer.main_ppo", *GOLDEN]
    assert command.env == {"VERL_FILE_LOGGER_PATH": "/sweeps/golden/trials/t/metrics.2.jsonl"}


@pytest.mark.parametrize(
    "value",
    [1e-6, 0.0, 5, -3, True, None, "", "Qwen/Qwen3-4B", "~/data/x.parquet", "true", "1", "null", "a b", "it's",
     "x,y", "a=b", "${oc.env:HOME}", "back\\slash", "end\\", ["console", "file"], {"a": 1, "b": "c d"}],
)
def test_format_override_round_trips_through_hydras_parser(value: Any) -> None:
    line = format_override("k", value)
    parsed = parse_override(line).value()
    if isinstance(value, (list, dict)):
        from omegaconf import OmegaConf

        parsed = OmegaConf.to_container(OmegaConf.create({"v": parsed}))["v"] if not isinstance(parsed, (list, dict)) else parsed
    assert parsed == value
    assert type(parsed) is type(value)


def test_verl_validate_accepts_the_seed_ablation_sweep() -> None:
    spec = load_spec(ROOT / "sweeps" / "seed_ablation.yaml")
    trials = expand(spec).trials
    results = VerlTrainer().validate(trials, lambda t: RunContext(Path("runs") / t.name, spec.name))
    assert len(results) == 21
    assert all(problems == [] for problems in results.values()), results


def test_verl_validate_names_each_problem(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    bad = {
        "unknown key": _with(trial, actor_rollout_ref__actor__optim__lrr=1e-6),
        "schedule": _with(trial, actor_rollout_ref__actor__optim__lr_scheduler_type="linear"),
        "wrong type": _with(trial, actor_rollout_ref__actor__optim__lr="abc", actor_rollout_ref__rollout__n="two"),
        "missing": _with(trial, actor_rollout_ref__rollout__name=_DROP),
        "batch": _with(trial, data__train_batch_size=3),
    }
    results = VerlTrainer().validate([trial, *bad.values()], lambda t: _ctx(t))
    assert results[trial.id] == []
    got = {name: results[t.id] for name, t in bad.items()}
    assert got["unknown key"] == [
        "`actor_rollout_ref.actor.optim.lrr`: not a key of verl's config (to add a new key, prefix it with +)"
    ]
    assert len(got["schedule"]) == 1
    assert got["schedule"][0].startswith("`actor_rollout_ref.actor.optim`: verl's FSDPOptimizerConfig refused it")
    assert "actor_rollout_ref.actor.optim.lr_scheduler_type=linear" in got["schedule"][0]
    assert "`actor_rollout_ref.actor.optim.lr`: must be a number (got 'abc')" in got["wrong type"]
    assert "`actor_rollout_ref.rollout.n`: must be an integer (got 'two')" in got["wrong type"]
    assert got["missing"] == ["`actor_rollout_ref.rollout.name`: required by verl and not set (it is ??? in verl's config)"]
    assert got["batch"] == [
        "verl's validate_config refused the config: train_batch_size (3) must be >= actor.ppo_mini_batch_size (32)"
    ]


def test_verl_validate_new_keys_with_plus(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    plain = _with(trial, **{"+data__my_new_field": 3})
    typed = _with(trial, **{"+actor_rollout_ref__actor__my_new_knob": 3})
    results = VerlTrainer().validate([plain, typed], lambda t: _ctx(t))
    assert results[plain.id] == []
    # A typed section (a dataclass in verl) refuses a field it does not declare, as verl would at start-up.
    assert len(results[typed.id]) == 1
    assert "unexpected keyword argument 'my_new_knob'" in results[typed.id][0]


def test_verl_fast_composition_equals_hydras_own(tmp_path: Path) -> None:
    """Applying overrides to the composed default config gives exactly what Hydra's compose gives."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    trial = _trial(tmp_path)
    lines = VerlTrainer().overrides(trial, _ctx(trial))
    checker = _VerlChecker()
    fast, errors = checker.apply(checker.pristine(), lines)
    assert errors == []
    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        full = compose(config_name="ppo_trainer", overrides=lines)
    assert OmegaConf.to_container(fast) == OmegaConf.to_container(full)


def test_verl_real_cli_reads_the_trials_values(tmp_path: Path) -> None:
    """Run the trial's real argv as `python -m verl.trainer.main_ppo ... --cfg job` and read verl's own config."""
    trial = _trial(tmp_path)
    argv = list(get_trainer("verl").command(trial, _ctx(trial)).argv)
    proc = subprocess.run([*argv, "--cfg", "job"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    actor = cfg["actor_rollout_ref"]["actor"]
    assert actor["optim"]["lr"] == pytest.approx(1e-6)
    assert actor["optim"]["lr_scheduler_type"] == "cosine"
    assert actor["optim"]["lr_warmup_steps"] == 50
    assert actor["optim"]["min_lr_ratio"] == pytest.approx(0.1)
    assert actor["use_kl_loss"] is True and actor["kl_loss_coef"] == pytest.approx(0.01)
    assert actor["kl_loss_type"] == "low_var_kl"
    assert actor["entropy_coeff"] == pytest.approx(0.01)
    assert cfg["actor_rollout_ref"]["rollout"]["n"] == 8
    assert cfg["data"]["seed"] == 3 and cfg["actor_rollout_ref"]["rollout"]["seed"] == 3
    assert actor["data_loader_seed"] == 3 and actor["fsdp_config"]["seed"] == 3
    assert cfg["data"]["train_files"] == "~/data/train.parquet"
    assert cfg["trainer"]["total_training_steps"] == 200 and cfg["trainer"]["test_freq"] == 10
    assert cfg["trainer"]["save_freq"] == 5 and cfg["trainer"]["resume_mode"] == "auto"
    assert cfg["trainer"]["logger"] == ["console", "file"]
    assert cfg["trainer"]["experiment_name"] == trial.name
    env_vars = cfg["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]
    assert env_vars["VERL_FILE_LOGGER_PATH"] == "/sweeps/golden/trials/t/metrics.0.jsonl"
    assert cfg["ray_kwargs"]["ray_init"]["address"] == "local"


def test_verl_config_dir_is_the_installed_wheels() -> None:
    assert (Path(verl_config_dir()) / "ppo_trainer.yaml").is_file()


def test_verl_config_dir_is_found_without_importing_verl() -> None:
    # `import verl` costs seconds; finding its config folder must not need it (checked in a fresh interpreter).
    program = "import sys; from orchestrator.trainers.verl import verl_config_dir; verl_config_dir(); print(sorted(m for m in sys.modules if m == 'verl' or m.startswith('verl.')))"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_verl_type_check_fails_closed_when_a_type_cannot_be_judged() -> None:
    """A check that cannot run is reported with the key, never taken as "no problem found"."""

    class Opaque:  # a type pydantic has no validator for
        pass

    problem = _type_problem(3, Opaque)
    assert problem is not None and problem.startswith("cannot be checked against verl's declared type Opaque")
    assert _type_problem(3, int) is None and _type_problem("x", int) == "must be an integer (got 'x')"
    # A section whose config class does not load: its keys are refused with the reason, not passed unchecked.
    from omegaconf import open_dict

    checker = _VerlChecker()
    broken = checker.pristine()
    with open_dict(broken):
        broken.actor_rollout_ref.actor["_target_"] = "verl.workers.config.NoSuchActorConfig"
    checker._pristine = broken
    errors = checker.check_types(["actor_rollout_ref.actor.ppo_epochs=2", "trainer.total_training_steps=5"])
    assert len(errors) == 1, errors
    assert errors[0].startswith("`actor_rollout_ref.actor.ppo_epochs`: cannot be type-checked: verl's config class ")
    assert "NoSuchActorConfig" in errors[0]
