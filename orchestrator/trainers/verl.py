"""The verl backend: `python -m verl.trainer.main_ppo` with Hydra overrides, validated against verl's own config.

`validate()` composes the installed verl's `ppo_trainer` config with each trial's overrides, as verl itself would,
and then runs verl's own checks: its typed config dataclasses and `validate_config`. Every problem is collected per
trial (an unknown key, a value of the wrong type, a value verl's dataclasses refuse, a required value left unset).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import io
import os
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from typing import Any

from orchestrator.design import Trial
from orchestrator.spec import SEED_KEYS
from orchestrator.errors import LaunchError
from orchestrator.trainers import Command, RunContext, plumbing_overrides
from orchestrator.trainers._hydra import format_override, parse_override

MODULE = "verl.trainer.main_ppo"
CONFIG_NAME = "ppo_trainer"
# Typed sections verl builds from the config at start-up (besides those validate_config builds itself).
_TYPED_SECTIONS = ("algorithm", "actor_rollout_ref.rollout", "actor_rollout_ref.actor")
# Keys whose values differ between the seeds of one point, and that verl's structural checks do not read.
_PER_TRIAL_KEYS = frozenset(
    (
        *SEED_KEYS,
        "trainer.experiment_name",
        "trainer.default_local_dir",
        "ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH",
    )
)


class VerlTrainer:
    """verl's PPO/GRPO trainer, run as `python -m verl.trainer.main_ppo key=value ...`.

    Args:
        private_ray: give each trial its own Ray instance (`ray_init.address=local`), so that the GPUs the
            orchestrator assigned to the trial (CUDA_VISIBLE_DEVICES) are exactly the ones verl sees.
        python: the interpreter that runs verl.
    """

    name = "verl"
    eval_sources: tuple[str, ...] | None = None
    """Unknown before a run: the data sources are a column of the validation files, read on the cluster."""

    def __init__(self, *, private_ray: bool = True, python: str | None = None) -> None:
        self._private_ray = private_ray
        self._python = python or sys.executable

    def overrides(self, trial: Trial, ctx: RunContext) -> list[str]:
        """Return the Hydra override lines of one attempt: the trial's settings, then the run plumbing."""
        metrics = str(ctx.metrics_path.absolute())
        settings = {**trial.overrides, **plumbing_overrides(trial, ctx)}
        if ctx.resume_from is not None:
            settings["trainer.del_local_ckpt_after_load"] = False  # a branch's copy of another trial's checkpoint
        lines = [format_override(key, value) for key, value in settings.items()]
        # verl's file logger runs inside a Ray actor: its path reaches it through the runtime env (notes/verl.md).
        lines.append(format_override("+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH", metrics))
        if self._private_ray:
            lines.append(format_override("+ray_kwargs.ray_init.address", "local"))
        return lines

    def command(self, trial: Trial, ctx: RunContext) -> Command:
        """Return the argv and env of one attempt of `trial`. Pure."""
        argv = (self._python, "-m", MODULE, *self.overrides(trial, ctx))
        return Command(argv=argv, env={"VERL_FILE_LOGGER_PATH": str(ctx.metrics_path.absolute())})

    def validate(self, trials: Sequence[Trial], ctx_for: Callable[[Trial], RunContext]) -> dict[str, list[str]]:
        """Return, per trial id, every problem verl's own config finds with the trial's overrides."""
        results: dict[str, list[str]] = {}
        lines_by_trial: dict[str, list[str]] = {}
        for trial in trials:
            try:
                lines_by_trial[trial.id] = self.overrides(trial, ctx_for(trial))
            except ValueError as exc:
                results[trial.id] = [str(exc)]
        if not lines_by_trial:
            return results
        checker = _VerlChecker()
        common = _shared_lines(lines_by_trial.values())
        base_cfg, base_errors = checker.apply(checker.pristine(), common)
        # verl's own checks look at the training settings, not at seeds, names or paths: run them once per
        # distinct setting; every trial's own values are still applied and type-checked.
        # Trials of one point differ only in those per-trial values: they share one copy of the composed config,
        # on which each trial's lines are applied in turn (the same keys, so each application overwrites the last).
        verdicts: dict[tuple[str, ...], list[str]] = {}
        configs: dict[tuple[str, ...], Any] = {}
        for trial_id, lines in lines_by_trial.items():
            own = [line for line in lines if line not in common]
            if any(_is_group_override(line) for line in lines):
                results[trial_id] = checker.check_full(lines)
                continue
            settings = tuple(line for line in lines if line.split("=", 1)[0].lstrip("+") not in _PER_TRIAL_KEYS)
            if settings not in configs:
                configs[settings] = copy.deepcopy(base_cfg)
            else:
                # The point's first trial has added its `+key`s already: later trials overwrite them (`++key`).
                own = [f"+{line}" if line.startswith("+") and not line.startswith("++") else line for line in own]
            cfg, errors = checker.apply(configs[settings], own)
            if settings not in verdicts:
                verdicts[settings] = checker.check_config(cfg, lines)
            results[trial_id] = base_errors + errors + checker.check_types(lines) + verdicts[settings]
        return results


def _shared_lines(all_lines: Any) -> list[str]:
    """Return the override lines every trial shares, in the first trial's order."""
    groups = [list(lines) for lines in all_lines]
    shared = set(groups[0]).intersection(*map(set, groups[1:]))
    return [line for line in groups[0] if line in shared]


def _is_group_override(line: str) -> bool:
    key = line.split("=", 1)[0]
    return "/" in key or "@" in key


@functools.lru_cache(maxsize=1)
def verl_config_dir() -> str:
    """Return the directory of the installed verl's trainer configs."""
    spec = importlib.util.find_spec("verl")  # without importing verl (seconds: it imports torch)
    if spec is None or not spec.submodule_search_locations:
        raise LaunchError("verl is not installed: `pip install verl==0.9.1` (config checks) or the `gpu` extra")
    return os.path.join(list(spec.submodule_search_locations)[0], "trainer", "config")


class _VerlChecker:
    """Composes verl's config and runs verl's checks, collecting messages instead of stopping at the first."""

    def __init__(self) -> None:
        from hydra import compose, initialize_config_dir

        self._compose = compose
        self._init = initialize_config_dir
        self._pristine: Any = None
        self._required: list[str] | None = None

    def pristine(self) -> Any:
        """Return verl's default config, composed once (Hydra, as main_ppo composes it)."""
        if self._pristine is None:
            with self._init(config_dir=verl_config_dir(), version_base=None):
                self._pristine = self._compose(config_name=CONFIG_NAME)
        return copy.deepcopy(self._pristine)

    def apply(self, cfg: Any, lines: Sequence[str]) -> tuple[Any, list[str]]:
        """Apply plain `key=value` overrides one at a time with Hydra's own rules; return cfg and the failures."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        errors = []
        for line in lines:
            try:
                override = parse_override(line)
                ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
            except Exception as exc:  # Hydra's ConfigCompositionException and OmegaConf's errors
                errors.append(_composition_message(line, exc))
        return cfg, errors

    def _required_keys(self) -> list[str]:
        """Return verl's mandatory (???) keys, less those inside a section that is switched off by default."""
        from omegaconf import OmegaConf

        if self._required is None:
            pristine = self._pristine if self._pristine is not None else self.pristine()
            self._required = sorted(OmegaConf.missing_keys(pristine))
        return self._required

    def check_full(self, lines: Sequence[str]) -> list[str]:
        """Compose with Hydra itself (config-group overrides need it), then run the same checks."""
        try:
            with self._init(config_dir=verl_config_dir(), version_base=None):
                cfg = self._compose(config_name=CONFIG_NAME, overrides=list(lines))
        except Exception as exc:
            return [f"verl's config refused the overrides: {_one_line(exc)}"]
        return self.check_types(lines) + self.check_config(cfg, lines)

    def check_types(self, lines: Sequence[str]) -> list[str]:
        """Return the overrides whose value does not fit the type verl declares (or the default's type)."""
        errors = []
        pristine = self._pristine if self._pristine is not None else self.pristine()
        for line in lines:
            override = parse_override(line)
            if override.is_delete():
                continue
            key = override.key_or_group
            try:
                expected = _declared_type(pristine, key)
            except _Uncheckable as exc:
                errors.append(f"`{key}`: {exc}")
                continue
            if expected is None:
                continue
            problem = _type_problem(override.value(), expected)
            if problem:
                errors.append(f"`{key}`: {problem}")
        return errors

    def check_config(self, cfg: Any, lines: Sequence[str]) -> list[str]:
        """Return what verl's own checks say of a composed config: required values, typed configs, validate_config."""
        from omegaconf import OmegaConf

        errors = [
            f"`{key}`: required by verl and not set (it is ??? in verl's config)"
            for key in self._required_keys()
            if _still_missing(cfg, key)
        ]
        if errors:
            return errors
        from verl.utils.config import omega_conf_to_dataclass, validate_config

        overridden = [parse_override(line) for line in lines]
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for section in _TYPED_SECTIONS:
                node = OmegaConf.select(cfg, section)
                if node is None or "_target_" not in node:
                    continue
                try:
                    omega_conf_to_dataclass(node)
                except Exception as exc:
                    errors.append(_typed_message(section, exc, overridden))
            if errors:
                return errors
            try:
                validate_config(cfg, use_reference_policy=_uses_reference(cfg), use_critic=_uses_critic(cfg))
            except Exception as exc:
                errors.append(f"verl's validate_config refused the config: {_one_line(exc)}")
        return errors


def _uses_reference(cfg: Any) -> bool:
    """Return whether verl builds a reference policy: a KL term in the loss or in the reward."""
    return bool(cfg.algorithm.get("use_kl_in_reward", False) or cfg.actor_rollout_ref.actor.use_kl_loss)


def _uses_critic(cfg: Any) -> bool:
    """Return whether verl builds a critic: `critic.enable` when set, else only for GAE advantages.

    (verl.trainer.ppo.utils decides the same; importing it costs seconds of distillation imports.)
    """
    enable = cfg.critic.get("enable", None)
    return bool(enable) if enable is not None else cfg.algorithm.adv_estimator == "gae"


def _still_missing(cfg: Any, key: str) -> bool:
    """Return True if `key` is still ??? and no enclosing section is switched off (`enable: false`)."""
    from omegaconf import OmegaConf

    parts = key.split(".")
    for depth in range(1, len(parts)):
        node = OmegaConf.select(cfg, ".".join(parts[:depth]), throw_on_missing=False)
        if OmegaConf.is_dict(node) and node.get("enable", None) is False:
            return False
    parent = OmegaConf.select(cfg, ".".join(parts[:-1]), throw_on_missing=False) if len(parts) > 1 else cfg
    return parent is not None and OmegaConf.is_missing(parent, parts[-1])


# ----------------------------------------------------------------------------------------------- type checking


class _Uncheckable(Exception):
    """The type of a key cannot be found or judged: reported as a problem, never taken as a pass."""


def _declared_type(cfg: Any, key: str) -> Any:
    """Return the type verl declares for `key` (its dataclass field), else the type of its default, else None."""
    from omegaconf import OmegaConf

    parts = key.split(".")
    hint = None
    for depth in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:depth]), throw_on_missing=False)
        if node is not None and OmegaConf.is_dict(node) and "_target_" in node:
            hint = _field_hint(str(node["_target_"]), parts[depth:])
            break
    if hint is not None:
        return hint
    try:
        default = OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float if isinstance(default, float) else int
    return None


def _field_hint(target: str, path: list[str]) -> Any:
    """Return the annotation of `path` inside the dataclass named by a `_target_`, or None if it declares none.

    Raises:
        _Uncheckable: If the class cannot be imported or its annotations cannot be read.
    """
    from hydra.utils import get_class

    try:
        cls: Any = get_class(target)
    except Exception as exc:
        raise _Uncheckable(f"cannot be type-checked: verl's config class `{target}` does not load ({_one_line(exc)})") from None
    for i, name in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            return None
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:
            raise _Uncheckable(
                f"cannot be type-checked: the annotations of `{cls.__qualname__}` do not resolve ({_one_line(exc)})"
            ) from None
        if name not in hints:
            return None
        hint = hints[name]
        if i == len(path) - 1:
            return hint
        cls = _dataclass_in(hint)
    return None


def _dataclass_in(hint: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_problem(value: Any, expected: Any) -> str | None:
    """Return why `value` does not fit `expected` (pydantic's lax rules), or None if it fits.

    A check that cannot run (a type pydantic cannot build a validator for, a validator that crashes) is a problem
    too: the value would otherwise reach verl unchecked.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, str) and "${" in value:
        return None  # an interpolation: resolved by OmegaConf at run time
    try:
        TypeAdapter(expected).validate_python(value)
    except ValidationError:
        return f"must be {_type_name(expected)} (got {value!r})"
    except Exception as exc:
        return f"cannot be checked against verl's declared type {_type_name(expected)} ({_one_line(exc)})"
    return None


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, hint.__name__)
    return str(hint).replace("typing.", "")


# ------------------------------------------------------------------------------------------------------ messages


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(("full_key", "object_type", "reference_type"))]
    text = "; ".join(lines) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _composition_message(line: str, exc: BaseException) -> str:
    key = line.split("=", 1)[0].lstrip("+~")
    text = str(exc)
    if "not in struct" in text or "Could not override" in text:
        return f"`{key}`: not a key of verl's config (to add a new key, prefix it with +)"
    if "Could not append" in text:
        return f"`{key}`: already in verl's config; drop the leading +"
    return f"`{key}`: {_one_line(exc)}"


def _typed_message(section: str, exc: BaseException, overridden: Sequence[Any]) -> str:
    """Say which typed verl config refused a section, why, and which of the trial's overrides went into it."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(exc)
    node = section
    for line in text.splitlines():
        if line.strip().startswith("full_key:") and line.split(":", 1)[1].strip():
            node = line.split(":", 1)[1].strip()
    target = text.split("'")[1].rsplit(".", 1)[-1] if "Error in call to target" in text else "config"
    mine = [f"{o.key_or_group}={o.value()}" for o in overridden if o.key_or_group.startswith(node + ".")]
    detail = str(cause).strip() or type(cause).__name__
    where = f"; this trial sets {', '.join(mine)}" if mine else ""
    return f"`{node}`: verl's {target} refused it ({detail}){where}"
