"""The trainer section, the override keys it takes, and the trainer keys the spec itself sets (seeds, budget)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import Field, field_validator

from orchestrator.spec._base import Scalar, Strict

# A Hydra override key: dotted identifiers, optionally prefixed by `+` or `++` (add / force-add).
OVERRIDE_KEY_RE = re.compile(r"^(\+{1,2})?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
OverrideValue = Union[Scalar, list[Any], dict[str, Any]]

# Every seed a verl run has (notes/verl.md): a trial's seed sets all of them.
SEED_KEYS = (
    "data.seed",
    "actor_rollout_ref.rollout.seed",
    "actor_rollout_ref.actor.data_loader_seed",
    "actor_rollout_ref.actor.fsdp_config.seed",
)
# The trainer keys the budget sets, and the budget field that sets each.
BUDGET_KEYS = {
    "trainer.total_training_steps": "max_steps",
    "trainer.total_epochs": "max_steps",
    "trainer.test_freq": "eval_every",
    "trainer.save_freq": "save_every",
}


def check_override_key(key: str) -> None:
    """Raise ValueError unless `key` is a dotted override key, optionally prefixed by `+` or `++`."""
    if not OVERRIDE_KEY_RE.match(key):
        raise ValueError(f"`{key}` is not a dotted override key (such as actor_rollout_ref.actor.entropy_coeff)")


def seed_and_budget_keys() -> dict[str, str]:
    """Return each trainer key the seeds or the budget set, with what sets it (`the seeds`, `budget.<field>`)."""
    owners: dict[str, str] = {key: "the seeds" for key in SEED_KEYS}
    owners.update({key: f"budget.{field}" for key, field in BUDGET_KEYS.items()})
    return owners


class TrainerSpec(Strict):
    """Which trainer runs the trials, from which base config, with which fixed overrides."""

    backend: Literal["verl", "mini"]
    base: Path | None = None
    overrides: dict[str, OverrideValue] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            check_override_key(key)
        return value
