"""Expand a sweep spec into trials: points of the design x seeds, each with its resolved trainer overrides.

Order is deterministic (points in design order, seeds inner). A trial's id is a hash of what it trains with (backend,
resolved overrides, seed), so it does not change when unrelated spec text (comments, name, other factors' levels)
changes; its name is readable (`lr=cos_kl=0.01_ent=0_n=8_s1`). Points that resolve to identical settings are
merged, with a warning.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec import (
    SEED_KEYS,
    SweepSpec,
    level_label,
    level_overrides,
    level_value,
    load_base_overrides,
)

# verl stops at whichever comes first, epochs or steps: make the step budget the one that binds.
UNBOUNDED_EPOCHS = 100_000

_SHORT_NAMES = {"lr_schedule": "lr", "kl": "kl", "entropy_coeff": "ent", "rollout_n": "n"}
_UNSAFE = re.compile(r"[^A-Za-z0-9.+=-]")


@dataclass(frozen=True)
class Trial:
    """One training run: a point of the design with one seed.

    Attributes:
        id: 12 hex digits, a hash of backend, resolved overrides and seed.
        name: readable and path-safe, e.g. `lr=cos_kl=0.01_ent=0_n=8_s1`.
        point: the name without the seed: trials of one point differ only in their seed.
        levels: factor -> level label.
        values: factor -> level value (JSON-ready).
        seed: the trial's seed; every trainer seed is set to it.
        overrides: resolved dotted trainer keys -> values (base, fixed overrides, budget, levels, seeds).
        parent: For a rescue branch (`orchestrator.rescue`): the id of the trial it branches from; else None.
        from_step: For a rescue branch: the parent's step whose checkpoint it resumes from.
        remedy: For a rescue branch: the remedy's label (`kl=0.1`, `n=8`).
    """

    id: str
    name: str
    point: str
    levels: dict[str, str]
    values: dict[str, Any]
    seed: int
    overrides: dict[str, Any] = field(repr=False)
    parent: str | None = None
    from_step: int | None = None
    remedy: str | None = None


@dataclass(frozen=True)
class Expansion:
    """The trials of a spec, and the warnings met while expanding it."""

    trials: list[Trial]
    warnings: list[str]


def factor_short_name(name: str, all_names: Sequence[str]) -> str:
    """Return the short name a factor has in trial names (`lr`, `kl`, `ent`, `n`, or an override's last part)."""
    if name in _SHORT_NAMES:
        return _SHORT_NAMES[name]
    last = name.rsplit(".", 1)[-1]
    clashes = [n for n in all_names if n != name and (_SHORT_NAMES.get(n) or n.rsplit(".", 1)[-1]) == last]
    return name if clashes else last


def design_points(spec: SweepSpec) -> list[dict[str, int]]:
    """Return the design's points as factor -> level index, in deterministic order."""
    names = list(spec.factors)
    kind = spec.design.type
    if kind == "grid":
        ranges = [range(len(spec.factors[n])) for n in names]
        return [dict(zip(names, combo)) for combo in itertools.product(*ranges)]
    baseline = {n: 0 for n in names}
    if spec.design.baseline:
        baseline.update({n: spec.level_index(n, lv) for n, lv in spec.design.baseline.items()})
    if kind == "one_at_a_time":
        points = [dict(baseline)]
        for n in names:
            for i in range(len(spec.factors[n])):
                if i != baseline[n]:
                    points.append({**baseline, n: i})
        return points
    points = []
    for given in spec.design.points or []:
        point = dict(baseline)
        point.update({n: spec.level_index(n, lv) for n, lv in given.items()})
        points.append(point)
    return points


def base_overrides(spec: SweepSpec) -> dict[str, Any]:
    """Return the overrides every trial shares: base file, fixed overrides, resources (verl), then the budget."""
    out: dict[str, Any] = {}
    if spec.trainer.base is not None:
        out.update(load_base_overrides(spec.trainer.base))
    out.update(spec.trainer.overrides)
    if spec.trainer.backend == "verl":
        out.update({"trainer.n_gpus_per_node": spec.resources.gpus, "trainer.nnodes": spec.resources.nodes})
    out.update(
        {
            "trainer.total_training_steps": spec.budget.max_steps,
            "trainer.total_epochs": UNBOUNDED_EPOCHS,
            "trainer.test_freq": spec.budget.eval_every,
            "trainer.save_freq": spec.budget.save_every,
        }
    )
    return out


def trial_id(backend: str, overrides: dict[str, Any], seed: int) -> str:
    """Return the stable id of a trial: a hash of its backend, resolved overrides and seed."""
    canonical = json.dumps({"backend": backend, "overrides": overrides, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(spec: SweepSpec) -> Expansion:
    """Return every trial of the spec: design points x seeds, identical points merged."""
    names = list(spec.factors)
    shared = base_overrides(spec)
    labels = {n: [level_label(n, lv, spec.factors[n]) for lv in spec.factors[n]] for n in names}
    shorts = {n: factor_short_name(n, names) for n in names}
    warnings: list[str] = []
    points: dict[str, _Point] = {}  # by fingerprint of the resolved settings
    for index in design_points(spec):
        levels = {n: labels[n][index[n]] for n in names}
        overrides = dict(shared)
        for n in names:
            overrides.update(level_overrides(n, spec.factors[n][index[n]]))
        point = _Point(
            name="_".join(f"{shorts[n]}={_safe(levels[n])}" for n in names),
            levels=levels,
            values={n: level_value(spec.factors[n][index[n]]) for n in names},
            overrides=overrides,
            fingerprint=trial_id(spec.trainer.backend, overrides, -1),
        )
        if point.fingerprint in points:
            first = points[point.fingerprint].name
            warnings.append(f"point {point.name} resolves to the same settings as {first}; merged into it")
            continue
        points[point.fingerprint] = point
    trials = []
    for point in _unique_point_names(list(points.values())):
        for seed in spec.seed_list:
            overrides = {**point.overrides, **{key: seed for key in SEED_KEYS}}
            trials.append(
                Trial(
                    id=trial_id(spec.trainer.backend, overrides, seed),
                    name=f"{point.name}_s{seed}",
                    point=point.name,
                    levels=point.levels,
                    values=point.values,
                    seed=seed,
                    overrides=overrides,
                )
            )
    return Expansion(trials=trials, warnings=warnings)


@dataclass
class _Point:
    name: str
    levels: dict[str, str]
    values: dict[str, Any]
    overrides: dict[str, Any]
    fingerprint: str


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text)


def _unique_point_names(points: list[_Point]) -> list[_Point]:
    """Append a fingerprint to names that two different points would share (labels that sanitise alike)."""
    counts: dict[str, int] = {}
    for p in points:
        counts[p.name] = counts.get(p.name, 0) + 1
    for p in points:
        if counts[p.name] > 1:
            p.name = f"{p.name}-{p.fingerprint[:6]}"
    return points
