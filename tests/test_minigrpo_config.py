"""The mini trainer's dialect: verl's override keys in Hydra's grammar, refused the way Hydra refuses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from orchestrator.minigrpo.config import MiniConfigError, compose, default_config, env_vars, loggers, lr_schedule_type

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "configs" / "mini" / "original.yaml"

# What a verl trial carries: every knob the sweeps vary, the seeds, the run length and the output paths.
VERL_STYLE_TRIAL = [
    "actor_rollout_ref.actor.optim.lr=1e-3",
    "actor_rollout_ref.actor.optim.lr_scheduler_type=cosine",
    "actor_rollout_ref.actor.optim.lr_warmup_steps=20",
    "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0",
    "actor_rollout_ref.actor.optim.min_lr_ratio=0.1",
    "actor_rollout_ref.actor.optim.num_cycles=0.5",
    "actor_rollout_ref.actor.optim.weight_decay=0.01",
    "actor_rollout_ref.actor.optim.betas=[0.9,0.999]",
    "actor_rollout_ref.actor.optim.clip_grad=1.0",
    "actor_rollout_ref.actor.use_kl_loss=true",
    "actor_rollout_ref.actor.kl_loss_coef=0.01",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff=0.01",
    "actor_rollout_ref.actor.clip_ratio_low=0.2",
    "actor_rollout_ref.actor.clip_ratio_high=0.28",
    "actor_rollout_ref.actor.ppo_epochs=1",
    "actor_rollout_ref.actor.ppo_mini_batch_size=16",
    "actor_rollout_ref.actor.loss_agg_mode=token-mean",
    "actor_rollout_ref.actor.data_loader_seed=3",
    "actor_rollout_ref.actor.fsdp_config.seed=3",
    "actor_rollout_ref.rollout.n=8",
    "actor_rollout_ref.rollout.seed=3",
    "actor_rollout_ref.rollout.temperature=1.0",
    "actor_rollout_ref.rollout.dtype=bfloat16",
    "actor_rollout_ref.model.path=Qwen/Qwen3-4B",
    "actor_rollout_ref.rollout.name=vllm",
    "algorithm.adv_estimator=grpo",
    "algorithm.norm_adv_by_std_in_grpo=true",
    "data.seed=3",
    "data.train_batch_size=32",
    "trainer.total_training_steps=200",
    "trainer.total_epochs=30",
    "trainer.test_freq=10",
    "trainer.save_freq=50",
    "trainer.val_before_train=true",
    "trainer.logger=[console,file]",
    "trainer.project_name=sweep",
    "trainer.experiment_name='lr=cos_kl=0.01_ent=0.01_n=8_s3'",  # a value holding "=" is quoted, as in Hydra
    "trainer.default_local_dir=/tmp/ckpt/trial",
    "trainer.resume_mode=auto",
    "trainer.max_actor_ckpt_to_keep=2",
    "trainer.n_gpus_per_node=8",
    "trainer.nnodes=1",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=/tmp/metrics/trial.jsonl",
]


def _as_overrides(mapping: dict[str, object]) -> list[str]:
    def render(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if value is None:
            return "null"
        if isinstance(value, list):
            return "[" + ",".join(render(v) for v in value) + "]"
        return str(value)

    return [f"{key}={render(value)}" for key, value in mapping.items()]


def test_compose_defaults_are_the_notes_recipe() -> None:
    cfg = compose([])
    actor = cfg.actor_rollout_ref.actor
    assert actor.optim.lr == pytest.approx(2e-3)
    assert lr_schedule_type(cfg) == "constant"
    assert actor.use_kl_loss is False
    assert actor.entropy_coeff == 0
    assert cfg.actor_rollout_ref.rollout.n == 2
    assert cfg.actor_rollout_ref.rollout.dtype == "bfloat16"
    assert cfg.data.train_batch_size == 32
    assert cfg.mini.num_threads == 1
    assert OmegaConf.is_struct(cfg)


def test_compose_accepts_a_verl_style_trial() -> None:
    cfg = compose(VERL_STYLE_TRIAL)
    assert cfg.actor_rollout_ref.actor.optim.lr_scheduler_type == "cosine"
    assert cfg.actor_rollout_ref.actor.optim.betas == [0.9, 0.999]
    assert cfg.actor_rollout_ref.rollout.n == 8
    assert cfg.trainer.experiment_name == "lr=cos_kl=0.01_ent=0.01_n=8_s3"
    assert loggers(cfg) == ["console", "file"]
    assert env_vars(cfg) == {"VERL_FILE_LOGGER_PATH": "/tmp/metrics/trial.jsonl"}


def test_compose_resolves_the_checkpoint_dir_interpolation() -> None:
    cfg = compose(["trainer.project_name=p", "trainer.experiment_name=e"])
    assert cfg.trainer.default_local_dir == "checkpoints/p/e"


def test_compose_original_base_file_reproduces_the_defaults() -> None:
    mapping = yaml.safe_load(ORIGINAL.read_text())
    assert all("." in key for key in mapping), "the base file is a flat mapping of dotted keys"
    cfg = compose(_as_overrides(mapping))
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(compose([]))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("actor_rollout_ref.actor.optim.lrr=1", "'actor_rollout_ref.actor.optim.lrr'"),
        ("actor_rollout_ref.rollout.nn=2", "Key 'nn' is not in struct"),
        ("trainer.foo.bar=1", "Key 'foo' is not in struct"),
        ("bogus=1", "Key 'bogus' is not in struct"),
    ],
)
def test_compose_refuses_an_unknown_key_like_hydra(override: str, named: str) -> None:
    with pytest.raises(MiniConfigError, match="Could not override") as info:
        compose([override])
    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_compose_unknown_key_lists_the_allowed_keys() -> None:
    with pytest.raises(MiniConfigError) as info:
        compose(["actor_rollout_ref.actor.optim.lrr=1"])
    assert "lr_scheduler_type" in str(info.value)
    assert "+actor_rollout_ref.actor.optim.lrr" in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor_rollout_ref.actor.optim.lr=fast", "`actor_rollout_ref.actor.optim.lr` must be a number >= 0 but got 'fast'"),
        ("actor_rollout_ref.actor.optim.lr=true", "must be a number >= 0 but got True"),
        ("actor_rollout_ref.rollout.n=0", "`actor_rollout_ref.rollout.n` must be an int >= 1 but got 0"),
        ("actor_rollout_ref.rollout.n=2.5", "must be an int >= 1 but got 2.5"),
        ("actor_rollout_ref.actor.optim.lr_scheduler_type=linear", "one of [constant, cosine] but got 'linear'"),
        ("actor_rollout_ref.actor.kl_loss_type=js", "`actor_rollout_ref.actor.kl_loss_type` must be one of [low_var_kl"),
        ("actor_rollout_ref.actor.use_kl_loss=1", "must be true or false but got 1"),
        ("actor_rollout_ref.actor.loss_agg_mode=mean", "must be one of [token-mean"),
        ("actor_rollout_ref.rollout.dtype=float8", "one of [bfloat16, float16, float32] but got 'float8'"),
        ("actor_rollout_ref.actor.optim.betas=[0.9]", "a list of two numbers in [0, 1)"),
        ("trainer.logger=[console,wandb]", "`trainer.logger` must be a list of [console, file]"),
        ("trainer.resume_mode=sometimes", "one of [auto, disable, resume_path]"),
        ("trainer.resume_mode=resume_path", "`trainer.resume_from_path` must be a path to a global_step_N folder"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size=5", "must divide data.train_batch_size=32 but got 5"),
        ("algorithm.adv_estimator=gae", "one of [grpo] but got 'gae'"),
        ("algorithm.use_kl_in_reward=true", "`algorithm.use_kl_in_reward` must be false"),
        ("actor_rollout_ref.actor.optim=3", "it is a section"),
    ],
)
def test_compose_refuses_a_bad_value_with_one_line(override: str, message: str) -> None:
    with pytest.raises(MiniConfigError) as info:
        compose([override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.early_stop=5", "new keys are allowed only under [ray_kwargs]"),
        ("+actor_rollout_ref.rollout.n=4", "an item is already at 'actor_rollout_ref.rollout.n'"),
        ("~trainer.logger", "cannot be deleted"),
        ("actor_rollout_ref.rollout.n=2,8", "sweeps are not supported"),
        ("actor_rollout_ref.rollout.n=[1,", "Could not parse override"),
    ],
)
def test_compose_refuses_adds_deletes_and_sweeps(override: str, message: str) -> None:
    with pytest.raises(MiniConfigError) as info:
        compose([override])
    assert message in str(info.value)


def test_compose_force_add_changes_an_existing_key() -> None:
    assert compose(["++actor_rollout_ref.rollout.n=4"]).actor_rollout_ref.rollout.n == 4


def test_compose_refuses_an_unquoted_equals_sign_in_a_value_like_hydra() -> None:
    with pytest.raises(MiniConfigError, match="Could not parse override"):
        compose(["trainer.experiment_name=lr=cos_s1"])


def test_compose_accepts_a_single_logger_name_and_the_kl_aliases() -> None:
    cfg = compose(["trainer.logger=file", "actor_rollout_ref.actor.kl_loss_type=k3+"])
    assert loggers(cfg) == ["file"]


def test_compose_deprecated_warmup_style_wins_like_verl() -> None:
    assert lr_schedule_type(compose(["actor_rollout_ref.actor.optim.warmup_style=cosine"])) == "cosine"


def test_compose_int_is_accepted_where_a_number_is_expected() -> None:
    assert compose(["actor_rollout_ref.actor.optim.lr=1"]).actor_rollout_ref.actor.optim.lr == 1


def test_default_config_every_leaf_has_a_rule() -> None:
    from orchestrator.minigrpo import config as module

    def leaves(node: DictConfig, prefix: str = "") -> list[str]:
        found = []
        for key in node.keys():
            child = node._get_node(key)
            path = f"{prefix}{key}"
            found += leaves(child, path + ".") if isinstance(child, DictConfig) else [path]
        return found

    assert sorted(leaves(default_config())) == sorted(module._RULES)


def test_cli_bad_key_prints_one_line_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.minigrpo", "actor_rollout_ref.actor.optim.lrr=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "actor_rollout_ref.actor.optim.lrr" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_bad_value_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.minigrpo", "actor_rollout_ref.rollout.n=zero"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: `actor_rollout_ref.rollout.n` must be an int >= 1 but got 'zero'."
    )


MINI_SWEEP = """\
name: mini-grid
trainer:
  backend: mini
  base: {base}
factors:
  lr_schedule:
    - {{type: constant, lr: 2.0e-3}}
    - {{type: cosine, lr: 2.0e-3, warmup_steps: 20, min_lr_ratio: 0.0}}
  kl:
    - {{use_kl_loss: false}}
    - {{use_kl_loss: true, coef: 0.01, type: low_var_kl}}
  entropy_coeff: [0.0, 0.01]
  rollout_n: [2, 8]
seeds: 2
budget: {{max_steps: 200, eval_every: 10, save_every: 10}}
"""


def test_compose_accepts_every_trial_the_mini_builder_emits(tmp_path: Path) -> None:
    from orchestrator.design import expand
    from orchestrator.spec import load_spec
    from orchestrator.trainers import RunContext, get_trainer

    spec_path = tmp_path / "sweep.yaml"
    spec_path.write_text(MINI_SWEEP.format(base=ORIGINAL))
    trials = expand(load_spec(spec_path)).trials
    trainer = get_trainer("mini")
    assert len(trials) == 32
    for trial in trials:
        ctx = RunContext(workdir=tmp_path / trial.id, project="mini-grid")
        cfg = compose(trainer.overrides(trial, ctx))
        assert cfg.actor_rollout_ref.rollout.n == trial.values["rollout_n"]
        assert cfg.actor_rollout_ref.rollout.seed == trial.seed
        assert cfg.data.seed == trial.seed
        assert cfg.trainer.experiment_name == trial.name
        assert cfg.trainer.total_training_steps == 200
    assert trainer.validate(trials, lambda t: RunContext(workdir=tmp_path / t.id, project="p")) == {
        t.id: [] for t in trials
    }

