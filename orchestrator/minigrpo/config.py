"""The mini trainer's configuration: verl's key layout, Hydra's override grammar, typed validation.

`compose(overrides)` is what the orchestrator calls to validate a trial without running it, and what the CLI calls
before training. It parses each override with Hydra's own grammar and applies it to the struct-mode default config
(`mini_trainer.yaml`), the way Hydra applies command-line overrides to verl's config:

- `key=value` changes an existing key; an unknown key is refused ("Key 'y' is not in struct").
- `+key=value` adds a key. Only keys under `ray_kwargs` may be added (verl's builder passes environment variables
  as `+ray_kwargs.ray_init.runtime_env.env_vars.NAME=value`; the mini trainer exports those before it starts).
  Anywhere else a new key could only be a typo or a verl feature the mini trainer lacks, so it is refused.
- `++key=value` changes a key, or adds it where `+` may.
- `~key` (delete) and sweeps (`key=1,2`) are refused.

Every leaf is then type-checked (`lr` a number, `rollout.n` an int >= 1, ...). Any error raises `MiniConfigError`
with one line naming the key, what is allowed and what was given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from orchestrator.minigrpo.corr_spec import IS_LEVELS, LOSS_TYPES, parse_is_threshold, parse_rs

DATA_SOURCE = "mini"
"""The one evaluation set the miniature logs: `val-core/mini/reward/mean@N`."""

DEFAULT_CONFIG_PATH = Path(__file__).with_name("mini_trainer.yaml")
ADDABLE_SECTIONS = ("ray_kwargs",)
KL_LOSS_TYPES = ("low_var_kl", "k3", "kl", "k1", "mse", "k2", "abs")
LOSS_AGG_MODES = (
    "token-mean",
    "token-sum",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)
LOGGERS = ("console", "file")
ROLLOUT_DTYPES = ("bfloat16", "float16", "float32")


class MiniConfigError(ValueError):
    """An override or the composed mini-trainer config is invalid; the message is one line naming the key."""


@dataclass(frozen=True)
class _Rule:
    """What one config leaf accepts.

    Attributes:
        kind: "number", "int", "bool", "str", "choice", "betas" or "loggers".
        minimum: Smallest allowed value for numbers and ints.
        maximum: Largest allowed value for numbers.
        exclusive_min: Whether `minimum` itself is refused.
        choices: Allowed strings for "choice" and "loggers".
        nullable: Whether null is allowed.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        """Return what the rule allows, as a phrase ("an int >= 1")."""
        text = {
            "number": "a number",
            "int": "an int",
            "bool": "true or false",
            "str": "a string",
            "choice": f"one of [{', '.join(self.choices)}]",
            "betas": "a list of two numbers in [0, 1)",
            "loggers": f"a list of [{', '.join(self.choices)}]",
            "scalar": "a number or a string",
        }[self.kind]
        if self.minimum is not None:
            text += f" {'>' if self.exclusive_min else '>='} {self.minimum:g}"
        if self.maximum is not None:
            text += f" and <= {self.maximum:g}"
        return f"null or {text}" if self.nullable else text

    def accepts(self, value: Any) -> bool:
        """Return whether `value` satisfies the rule."""
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and value != ""
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "betas":
            return _is_betas(value)
        if self.kind == "scalar":
            return _is_number(value) or (isinstance(value, str) and value != "")
        if self.kind == "loggers":
            names = [value] if isinstance(value, str) else value
            return isinstance(names, list) and all(isinstance(n, str) and n in self.choices for n in names)
        if self.kind == "int" and not _is_int(value):
            return False
        if self.kind == "number" and not _is_number(value):
            return False
        return self._in_bounds(float(value))

    def _in_bounds(self, value: float) -> bool:
        if self.minimum is not None and (value < self.minimum or (self.exclusive_min and value == self.minimum)):
            return False
        return self.maximum is None or value <= self.maximum


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _is_betas(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_number(b) and 0.0 <= float(b) < 1.0 for b in value)
    )


_NUM = _Rule("number")
_NONNEG = _Rule("number", minimum=0.0)
_POS = _Rule("number", minimum=0.0, exclusive_min=True)
_INT = _Rule("int")
_POS_INT = _Rule("int", minimum=1)
_BOOL = _Rule("bool")
_STR = _Rule("str")
_SEED = _Rule("int", minimum=0)
_IGNORED = _Rule("str", nullable=True)

_A = "actor_rollout_ref.actor."
_R = "actor_rollout_ref.rollout."
_C = "algorithm.rollout_correction."
_RULES: dict[str, _Rule] = {
    "actor_rollout_ref.model.path": _IGNORED,
    _A + "optim.lr": _NONNEG,
    _A + "optim.lr_scheduler_type": _Rule("choice", choices=("constant", "cosine")),
    _A + "optim.warmup_style": _Rule("choice", choices=("constant", "cosine"), nullable=True),
    _A + "optim.lr_warmup_steps": _Rule("int", nullable=True),
    _A + "optim.lr_warmup_steps_ratio": _Rule("number", minimum=0.0, maximum=1.0),
    _A + "optim.min_lr_ratio": _Rule("number", minimum=0.0, maximum=1.0, nullable=True),
    _A + "optim.num_cycles": _NONNEG,
    _A + "optim.weight_decay": _NONNEG,
    _A + "optim.betas": _Rule("betas"),
    _A + "optim.clip_grad": _POS,
    _A + "use_kl_loss": _BOOL,
    _A + "kl_loss_coef": _NONNEG,
    _A + "kl_loss_type": _Rule("choice", choices=KL_LOSS_TYPES + tuple(k + "+" for k in KL_LOSS_TYPES)),
    _A + "entropy_coeff": _NUM,
    _A + "clip_ratio": _NONNEG,
    _A + "clip_ratio_low": _Rule("number", minimum=0.0, nullable=True),
    _A + "clip_ratio_high": _Rule("number", minimum=0.0, nullable=True),
    _A + "clip_ratio_c": _Rule("number", minimum=1.0, exclusive_min=True),
    _A + "ppo_epochs": _POS_INT,
    _A + "ppo_mini_batch_size": _POS_INT,
    _A + "ppo_micro_batch_size_per_gpu": _Rule("int", minimum=1, nullable=True),
    _A + "loss_agg_mode": _Rule("choice", choices=LOSS_AGG_MODES),
    _A + "shuffle": _BOOL,
    _A + "data_loader_seed": _SEED,
    _A + "fsdp_config.seed": _SEED,
    _R + "name": _IGNORED,
    _R + "n": _POS_INT,
    _R + "seed": _SEED,
    _R + "temperature": _POS,
    _R + "dtype": _Rule("choice", choices=ROLLOUT_DTYPES),
    _R + "calculate_log_probs": _BOOL,
    _R + "val_kwargs.temperature": _POS,
    _R + "val_kwargs.do_sample": _BOOL,
    _R + "val_kwargs.n": _POS_INT,
    "algorithm.adv_estimator": _Rule("choice", choices=("grpo",)),
    "algorithm.norm_adv_by_std_in_grpo": _BOOL,
    "algorithm.use_kl_in_reward": _BOOL,
    _C + "rollout_is": _Rule("choice", choices=IS_LEVELS, nullable=True),
    _C + "rollout_is_threshold": _Rule("scalar", nullable=True),
    _C + "rollout_is_batch_normalize": _BOOL,
    _C + "rollout_rs": _Rule("str", nullable=True),
    _C + "rollout_rs_threshold": _Rule("scalar", nullable=True),
    _C + "bypass_mode": _BOOL,
    _C + "loss_type": _Rule("choice", choices=LOSS_TYPES),
    "data.seed": _Rule("int", minimum=0, nullable=True),
    "data.shuffle": _BOOL,
    "data.train_batch_size": _POS_INT,
    "data.max_prompt_length": _POS_INT,
    "data.max_response_length": _Rule("int", minimum=3),
    "trainer.total_training_steps": _Rule("int", minimum=1, nullable=True),
    "trainer.total_epochs": _POS_INT,
    "trainer.test_freq": _INT,
    "trainer.save_freq": _INT,
    "trainer.val_before_train": _BOOL,
    "trainer.logger": _Rule("loggers", choices=LOGGERS),
    "trainer.project_name": _STR,
    "trainer.experiment_name": _STR,
    "trainer.default_local_dir": _STR,
    "trainer.resume_mode": _Rule("choice", choices=("auto", "disable", "resume_path")),
    "trainer.resume_from_path": _Rule("str", nullable=True),
    "trainer.max_actor_ckpt_to_keep": _Rule("int", minimum=1, nullable=True),
    "trainer.n_gpus_per_node": _Rule("int", minimum=0),
    "trainer.nnodes": _POS_INT,
    "ray_kwargs.ray_init.num_cpus": _Rule("int", minimum=1, nullable=True),
    "mini.num_threads": _POS_INT,
    "mini.val_seed": _SEED,
    "mini.cache_dir": _Rule("str", nullable=True),
    "mini.task.seed": _SEED,
    "mini.task.n_train_prompts": _POS_INT,
    "mini.task.n_val_prompts": _POS_INT,
    "mini.task.min_digits": _Rule("int", minimum=2),
    "mini.task.max_digits": _Rule("int", minimum=2),
    "mini.task.format_reward": _NUM,
    "mini.task.correct_reward": _NUM,
    "mini.task.length_penalty": _NUM,
    "mini.model.d_model": _POS_INT,
    "mini.model.n_layers": _POS_INT,
    "mini.model.n_heads": _POS_INT,
    "mini.model.mlp_ratio": _POS_INT,
    "mini.warm_start.steps": _Rule("int", minimum=0),
    "mini.warm_start.batch_size": _POS_INT,
    "mini.warm_start.lr": _NONNEG,
    "mini.warm_start.warmup_steps": _Rule("int", minimum=0),
    "mini.warm_start.full_chain_frac": _Rule("number", minimum=0.0, maximum=1.0),
    "mini.warm_start.wrong_answer_frac": _Rule("number", minimum=0.0, maximum=1.0),
}


def default_config() -> DictConfig:
    """Return the default config (`mini_trainer.yaml`) in struct mode, interpolations unresolved."""
    cfg = OmegaConf.load(DEFAULT_CONFIG_PATH)
    assert isinstance(cfg, DictConfig)
    OmegaConf.set_struct(cfg, True)
    return cfg


def compose(overrides: Sequence[str]) -> DictConfig:
    """Apply Hydra-style overrides to the default config and type-check the result, without running anything.

    Args:
        overrides: Overrides in Hydra's grammar, e.g. `["actor_rollout_ref.rollout.n=8", "trainer.logger=[file]"]`.

    Returns:
        The composed config, struct mode, interpolations resolved.

    Raises:
        MiniConfigError: An override does not parse, names an unknown key, or gives a value of the wrong type.
    """
    cfg = default_config()
    for override in _parse(overrides):
        _apply(cfg, override)
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:  # omegaconf raises several interpolation errors; all are user errors here
        raise MiniConfigError(f"Could not resolve the config: {_one_line(exc)}") from None
    _validate(cfg)
    return cfg


def cache_dir(cfg: DictConfig) -> Path:
    """Return the warm-start cache folder: `mini.cache_dir`, else `$ABLATE_CACHE_DIR`, else ~/.cache/ablate/minigrpo."""
    configured = cfg.mini.cache_dir or os.environ.get("ABLATE_CACHE_DIR") or "~/.cache/ablate/minigrpo"
    return Path(configured).expanduser()


def lr_schedule_type(cfg: DictConfig) -> str:
    """Return the effective LR schedule: verl's deprecated `warmup_style` wins over `lr_scheduler_type` when set."""
    optim = cfg.actor_rollout_ref.actor.optim
    return str(optim.warmup_style or optim.lr_scheduler_type)


def loggers(cfg: DictConfig) -> list[str]:
    """Return `trainer.logger` as a list (verl accepts a single name too)."""
    value = cfg.trainer.logger
    return [value] if isinstance(value, str) else list(value)


def env_vars(cfg: DictConfig) -> dict[str, str]:
    """Return the variables given as `+ray_kwargs.ray_init.runtime_env.env_vars.NAME=value`."""
    found = OmegaConf.select(cfg, "ray_kwargs.ray_init.runtime_env.env_vars", default=None)
    if found is None:
        return {}
    return {str(k): str(v) for k, v in OmegaConf.to_container(found).items()}  # type: ignore[union-attr]


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if isinstance(overrides, str):
        raise MiniConfigError(f"overrides must be a list of strings (got the string {overrides!r})")
    parser = OverridesParser.create()
    parsed = []
    for line in overrides:
        try:
            parsed.extend(parser.parse_overrides([line]))
        except HydraException as exc:
            raise MiniConfigError(f"Could not parse override {line!r}: {_one_line(exc)}") from None
    return parsed


def _apply(cfg: DictConfig, override: Any) -> None:
    key = override.key_or_group
    line = override.input_line
    if override.is_sweep_override():
        raise MiniConfigError(f"Could not override '{key}': sweeps are not supported, give one value (got {line!r})")
    if override.is_delete():
        raise MiniConfigError(f"Could not delete '{key}': the mini trainer's keys cannot be deleted (got {line!r})")
    if override.package is not None:
        raise MiniConfigError(f"Could not override '{key}': packages (@) are not supported (got {line!r})")
    value = override.value()
    exists = _exists(cfg, key)
    if override.is_add() and exists:
        raise MiniConfigError(f"Could not append to config: an item is already at '{key}' (got {line!r})")
    if exists:
        _set(cfg, key, value, line)
        return
    if not (override.is_add() or override.is_force_add()):
        raise MiniConfigError(_not_in_struct(cfg, key, line))
    if not any(key == s or key.startswith(s + ".") for s in ADDABLE_SECTIONS):
        raise MiniConfigError(
            f"Could not add '{key}': new keys are allowed only under [{', '.join(ADDABLE_SECTIONS)}] (got {line!r})"
        )
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)


def _set(cfg: DictConfig, key: str, value: Any, line: str) -> None:
    current = OmegaConf.select(cfg, key)
    if isinstance(current, DictConfig) and not isinstance(value, dict):
        raise MiniConfigError(f"Could not override '{key}': it is a section, set its keys ({key}.x=...) (got {line!r})")
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except Exception as exc:  # struct errors from a nested dict value, validation errors from omegaconf
        raise MiniConfigError(f"Could not override '{key}' with {line!r}: {_one_line(exc)}") from None


def _exists(cfg: DictConfig, key: str) -> bool:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True


def _not_in_struct(cfg: DictConfig, key: str, line: str) -> str:
    node: Any = cfg
    parent = ""
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            known = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else ""
            where = f"'{parent}'" if parent else "the top level"
            return (
                f"Could not override '{key}': Key '{part}' is not in struct; keys at {where}: [{known}]; "
                f"to append a key use +{key}=... (got {line!r})"
            )
        parent = f"{parent}.{part}" if parent else part
        node = node._get_node(part)
    return f"Could not override '{key}' (got {line!r})"  # pragma: no cover - only called for missing keys


def _validate(cfg: DictConfig) -> None:
    defaults = default_config()
    for path, default in _walk(defaults):
        if isinstance(default, DictConfig):
            if not isinstance(OmegaConf.select(cfg, path), DictConfig):
                raise MiniConfigError(f"`{path}` must be a section (got {OmegaConf.select(cfg, path)!r})")
            continue
        rule = _RULES[path]
        value = _plain(OmegaConf.select(cfg, path))
        if not rule.accepts(value):
            raise MiniConfigError(f"`{path}` must be {rule.describe()} but got {value!r}.")
    _check_env_vars(cfg)
    _check_relations(cfg)


def _walk(node: DictConfig, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key in node.keys():
        path = f"{prefix}{key}"
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            yield path, child
            yield from _walk(child, path + ".")
        else:
            yield path, child


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value)
    return value


def _check_env_vars(cfg: DictConfig) -> None:
    found = OmegaConf.select(cfg, "ray_kwargs.ray_init.runtime_env.env_vars", default=None)
    if found is None:
        return
    if not isinstance(found, DictConfig):
        raise MiniConfigError(f"`ray_kwargs.ray_init.runtime_env.env_vars` must be a mapping (got {_plain(found)!r})")
    for name, value in OmegaConf.to_container(found).items():
        if isinstance(value, (dict, list)):
            raise MiniConfigError(
                f"`ray_kwargs.ray_init.runtime_env.env_vars.{name}` must be a string or a number (got {value!r})"
            )


def _check_relations(cfg: DictConfig) -> None:
    actor = cfg.actor_rollout_ref.actor
    batch = cfg.data.train_batch_size
    task = cfg.mini.task
    if batch % actor.ppo_mini_batch_size != 0:
        raise MiniConfigError(
            f"`actor_rollout_ref.actor.ppo_mini_batch_size` must divide data.train_batch_size={batch} "
            f"but got {actor.ppo_mini_batch_size}."
        )
    if task.max_digits < task.min_digits:
        raise MiniConfigError(f"`mini.task.max_digits` must be >= mini.task.min_digits={task.min_digits} "
                              f"(got {task.max_digits})")
    if cfg.data.max_prompt_length < task.max_digits + 1:
        raise MiniConfigError(f"`data.max_prompt_length` must be >= mini.task.max_digits + 1 = {task.max_digits + 1} "
                              f"(got {cfg.data.max_prompt_length})")
    if task.n_train_prompts < batch:
        raise MiniConfigError(f"`mini.task.n_train_prompts` must be >= data.train_batch_size={batch} "
                              f"(got {task.n_train_prompts})")
    if cfg.mini.model.d_model % cfg.mini.model.n_heads != 0:
        raise MiniConfigError(f"`mini.model.n_heads` must divide mini.model.d_model={cfg.mini.model.d_model} "
                              f"(got {cfg.mini.model.n_heads})")
    if cfg.algorithm.use_kl_in_reward:
        raise MiniConfigError("`algorithm.use_kl_in_reward` must be false: the mini trainer has no KL in reward; "
                              "use actor_rollout_ref.actor.use_kl_loss (got True)")
    _check_resume(cfg)
    _check_rollout_correction(cfg.algorithm.rollout_correction)


def _check_rollout_correction(corr: DictConfig) -> None:
    """Refuse thresholds and rejection options that verl's rollout correction would refuse when it runs."""
    if corr.rollout_is_threshold is not None:
        try:
            parse_is_threshold(corr.rollout_is_threshold)
        except ValueError as exc:
            raise MiniConfigError(f"`{_C}rollout_is_threshold`: {exc} (got {corr.rollout_is_threshold!r})") from None
    if corr.rollout_rs is None:
        return
    try:
        parse_rs(corr.rollout_rs, corr.rollout_rs_threshold)
    except ValueError as exc:
        key = "rollout_rs_threshold" if "threshold" in str(exc).lower() else "rollout_rs"
        raise MiniConfigError(f"`{_C}{key}`: {exc} (got {corr[key]!r})") from None


def _check_resume(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    if trainer.resume_mode != "resume_path":
        return
    path = trainer.resume_from_path
    if not isinstance(path, str) or "global_step_" not in path:
        raise MiniConfigError(
            "`trainer.resume_from_path` must be a path to a global_step_N folder when trainer.resume_mode=resume_path "
            f"(got {path!r})"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
