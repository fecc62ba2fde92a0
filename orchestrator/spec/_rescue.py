"""`pruning.rescue`: remedies a collapsed trial is branched with, from its best or its last healthy checkpoint.

A remedy is written in the factors' vocabulary: `{kl: 0.1}`, `{rollout_n: 8}`, `{entropy_coeff: 0.001}`, any dotted
override key, or several of them at once (`{kl: 0.1, rollout_n: 8}`). A branch resumes the parent's trainer state
from a checkpoint (verl's `trainer.resume_mode=resume_path`), so a remedy that the restored state would silently
undo is refused here: verl restores the optimizer's state (with each parameter group's learning rate, betas and
weight decay) and the LR scheduler's, so no `optim` key can change on resume; it restores the data loader's
position, so the batch size cannot either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from orchestrator.spec._base import Strict, scalar_text
from orchestrator.spec._factors import TYPED_FACTORS, level_label, level_list_type, level_overrides, level_value
from orchestrator.spec._messages import show_value
from orchestrator.spec._trainer import check_override_key, seed_and_budget_keys

_SHORT = {"lr_schedule": "lr", "kl": "kl", "entropy_coeff": "ent", "rollout_n": "n"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")
_RESTORED_ON_RESUME = (
    (re.compile(r"^(actor_rollout_ref\.actor|critic)\.optim\."), "verl restores the optimizer's and the LR scheduler's state from the checkpoint, which would silently undo it"),
    (re.compile(r"^data\.(train_batch_size|shuffle|seed)$"), "verl restores the data loader's position from the checkpoint"),
    (re.compile(r"^trainer\.(resume_mode|resume_from_path|default_local_dir|del_local_ckpt_after_load)$"), "ablate sets it to resume the branch"),
)


@dataclass(frozen=True)
class Remedy:
    """One remedy: the levels it sets (factor -> JSON-ready value) and the trainer overrides they resolve to.

    Attributes:
        label: Readable and path-safe, e.g. `kl=0.1` or `kl=0.1_n=8`; a branch's name ends with `+<label>`.
        levels: Factor name -> level value, as written.
        overrides: Resolved dotted trainer keys -> values.
    """

    label: str
    levels: dict[str, Any]
    overrides: dict[str, Any]


def parse_remedy(raw: Any) -> Remedy:
    """Return the remedy a mapping of factors to one level each describes; raise ValueError naming what is wrong."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            f"a remedy is a mapping of factors to one level each, such as {{kl: 0.1}} or {{rollout_n: 8}} (got {show_value(raw)})"
        )
    owners = seed_and_budget_keys()
    labels, levels, overrides = [], {}, {}
    for name, given in raw.items():
        name = str(name)
        if name == "lr_schedule":
            raise ValueError(
                "`lr_schedule` cannot change on resume: verl restores the optimizer's and the LR scheduler's state "
                "from the checkpoint, which would silently undo it; compare schedules as a factor from step 0"
            )
        if name not in TYPED_FACTORS:
            if "." not in name:
                raise ValueError(
                    f"unknown factor `{name}`; allowed: {', '.join(f for f in TYPED_FACTORS if f != 'lr_schedule')}, "
                    "or a dotted trainer override key"
                )
            check_override_key(name)
        try:
            (level,) = TypeAdapter(level_list_type(name)).validate_python([given])
        except ValidationError as error:
            problem = error.errors()[0]
            raise ValueError(f"`{name}`: {problem['msg']} (got {show_value(given)})") from None
        for key, value in level_overrides(name, level).items():
            plain = key.lstrip("+")
            if plain in owners:
                raise ValueError(f"`{name}` sets {plain}, which {owners[plain]} set; a remedy cannot change it")
            for pattern, why in _RESTORED_ON_RESUME:
                if pattern.match(plain):
                    raise ValueError(f"`{name}` cannot change on resume ({plain}): {why}")
            overrides[key] = value
        levels[name] = level_value(level)
        short = _SHORT.get(name, name.rsplit(".", 1)[-1])
        labels.append(f"{short}={level_label(name, level, [level])}")
    return Remedy(label=_UNSAFE.sub("-", "_".join(labels)), levels=levels, overrides=overrides)


def same_setting(overrides: dict[str, Any], remedy: Remedy) -> bool:
    """Return whether a trial with these resolved overrides already has every setting `remedy` makes."""

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
            return float(a) == float(b)
        return scalar_text(a) == scalar_text(b) if not isinstance(a, (dict, list)) else a == b

    return all(key in overrides and same(overrides[key], value) for key, value in remedy.overrides.items())


class Rescue(Strict):
    """`pruning.rescue`: when a collapse rule stops a trial, branch it once per remedy from one of its checkpoints.

    `from: best` resumes from the trial's best checkpoint; `from: last_healthy` from the latest checkpoint before
    its collapse onset (the sweep then keeps its last five evaluated checkpoints besides the best).
    """

    remedies: list[Any] = Field(min_length=1)
    from_: Literal["best", "last_healthy"] = Field(default="best", alias="from")

    @field_validator("remedies")
    @classmethod
    def _remedies(cls, value: list[Any]) -> list[Any]:
        seen: dict[str, int] = {}
        for i, raw in enumerate(value):
            try:
                remedy = parse_remedy(raw)
            except ValueError as error:
                raise ValueError(f"[{i}]: {error}") from None
            key = repr(sorted(remedy.overrides.items()))
            if key in seen:
                raise ValueError(f"[{i}] repeats remedy [{seen[key]}] ({remedy.label})")
            seen[key] = i
        return value

    def parsed(self) -> list[Remedy]:
        """Return the remedies, parsed."""
        return [parse_remedy(raw) for raw in self.remedies]
