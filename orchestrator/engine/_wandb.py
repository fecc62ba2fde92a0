"""How a trial's wandb run is named and grouped, so that W&B's own run grouping shows each configuration's seeds.

`wandb_init_kwargs` is pure: the arguments of `wandb.init` for one trial. Its runs are grouped by configuration
(`group`: the configuration's name as the report writes it, `kl=0.01, lr_schedule=cos`), so that W&B's grouped
view draws each configuration's seeds as one line with their mean and band; the sweep is the `job_type`, and the
config holds the levels, the seed and the trainer's overrides, so that runs can be grouped or filtered by any of
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.design import Trial

__all__ = ["trial_group", "wandb_init_kwargs"]

MAX_ID = 64
"""The longest run id wandb accepts."""


def trial_group(trial: Trial) -> str:
    """Return the trial's W&B group: its configuration's name, the same for every seed of one configuration.

    A configuration is named as the report and dashboard name it (`factor=level, ...`, factors in the spec's order);
    a trial without factors is grouped by its point (its name without the seed). A rescue branch is grouped with
    the other branches of its remedy from the same configuration, apart from the configuration's own seeds.
    """
    from orchestrator.report import config_label

    name = config_label(trial.levels) if trial.levels else trial.point
    if trial.parent is not None:
        return f"{name} | rescue {trial.remedy or ''}".rstrip()
    return name


def wandb_init_kwargs(wandb: Mapping[str, Any], *, sweep: str, trial: Trial, workdir: Path) -> dict[str, Any]:
    """Return the keyword arguments of `wandb.init` for one trial of a sweep.

    Args:
        wandb: The spec's `tracking.wandb` (project, entity, mode).
        sweep: The sweep's name: the runs' `job_type`.
        trial: The trial.
        workdir: The trial's folder (wandb writes its `wandb/` folder there).
    """
    group = trial_group(trial)
    config = {
        **trial.overrides,
        "ablate/sweep": sweep,
        "ablate/trial_id": trial.id,
        "ablate/configuration": group,
        "ablate/levels": dict(trial.levels),
        "ablate/seed": trial.seed,
        # Each factor on its own, so that W&B can group or filter runs by one factor across the others.
        **{f"ablate/level/{factor}": level for factor, level in trial.levels.items()},
    }
    if trial.parent is not None:
        config.update({"ablate/parent": trial.parent, "ablate/from_step": trial.from_step, "ablate/remedy": trial.remedy})
    return {
        "project": wandb["project"],
        "entity": wandb.get("entity"),
        "mode": wandb.get("mode", "offline"),
        "group": group,
        "job_type": sweep,
        "name": trial.name,
        "id": f"{sweep}-{trial.id}"[:MAX_ID],
        "resume": "allow",
        "dir": str(workdir),
        "tags": [f"{k}={v}" for k, v in trial.levels.items()] + [f"seed={trial.seed}"],
        "config": config,
        "reinit": "create_new",
    }
