"""The sweep spec: Pydantic v2 models loaded from YAML.

A spec says which trials to run (trainer, factors, design, seeds), for how long (budget), how to judge them
(objective, pruning) and where (resources, cluster). Everything is checked here, at load time, so that a bad spec
is refused before anything is launched. `load_spec` is the one entry point; its errors are `SpecError`s with one
line per problem: `<file>: <field path>: <what is allowed> (got <value>)`.

Modules:

    _base       the strict base model, plain names, scalar values, how numbers are shown
    _trainer    `trainer:`, override keys, the keys the seeds and the budget set
    _factors    `factors:` levels (lr_schedule, kl, entropy_coeff, rollout_n, override keys) and `design:`
    _run        `budget:`, `resources:`, `execution:`, `tracking:`
    _judging    `objective:`, `pruning:` (ASHA, collapse rules, rescue)
    _rescue     `pruning.rescue:` remedies, what a resumed trainer can honour
    _cluster    `cluster: {slurm: ...}`
    _search     `search: {type: optuna}`
    _sweep      `SweepSpec`, the whole spec and its checks across sections
    _load       YAML reading, `load_spec` / `parse_spec`, base configs
    _messages   pydantic errors as one-line messages
"""

from orchestrator.spec._base import (
    NAME_RE,
    PlainName,
    Scalar,
    check_plain_name,
)
from orchestrator.spec._cluster import (
    Slurm,
    SlurmCluster,
)
from orchestrator.spec._factors import (
    TYPED_FACTORS,
    Design,
    GroupSize,
    KlLoss,
    KlLossType,
    LrSchedule,
    NonNegFloat,
    level_label,
    level_overrides,
    level_value,
)
from orchestrator.spec._judging import (
    Asha,
    Objective,
    Pruning,
)
from orchestrator.spec._rescue import (
    Remedy,
    Rescue,
    parse_remedy,
    same_setting,
)
from orchestrator.spec._load import (
    load_base_overrides,
    load_spec,
    parse_spec,
    read_yaml,
)
from orchestrator.spec._messages import (
    format_errors,
    format_loc,
)
from orchestrator.spec._run import (
    Budget,
    Execution,
    Resources,
    Tracking,
    Wandb,
)
from orchestrator.spec._search import (
    Search,
    SearchParam,
)
from orchestrator.spec._sweep import (
    SweepSpec,
)
from orchestrator.spec._trainer import (
    BUDGET_KEYS,
    OVERRIDE_KEY_RE,
    SEED_KEYS,
    OverrideValue,
    TrainerSpec,
)

__all__ = [
    "BUDGET_KEYS",
    "NAME_RE",
    "OVERRIDE_KEY_RE",
    "SEED_KEYS",
    "TYPED_FACTORS",
    "Asha",
    "Budget",
    "Design",
    "Execution",
    "GroupSize",
    "KlLoss",
    "KlLossType",
    "LrSchedule",
    "NonNegFloat",
    "Objective",
    "OverrideValue",
    "PlainName",
    "Pruning",
    "Remedy",
    "Rescue",
    "Resources",
    "Scalar",
    "Search",
    "SearchParam",
    "Slurm",
    "SlurmCluster",
    "SweepSpec",
    "Tracking",
    "TrainerSpec",
    "Wandb",
    "check_plain_name",
    "format_errors",
    "format_loc",
    "level_label",
    "level_overrides",
    "level_value",
    "load_base_overrides",
    "load_spec",
    "parse_remedy",
    "parse_spec",
    "read_yaml",
    "same_setting",
]
