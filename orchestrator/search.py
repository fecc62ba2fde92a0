"""Follow-up search (`search: {type: optuna}`): trials sampled by Optuna's TPE through Tune's `OptunaSearch`.

A search varies trainer overrides over continuous (or integer, or categorical) ranges around one configuration:
the spec's single design point and single seed (`search_template`). Its trials are not known up-front: Tune asks
`OptunaSearch` for a configuration, and the trial function turns it into a `Trial` (`search_trial`), whose id is
the usual hash of what it trains with, and registers it in the store before it runs.

What Optuna is told: each trial reports its best-so-far objective (`BEST`), so a trial that ASHA or a collapse
rule stopped is recorded with the best value it reached, not the last one (Tune's `OptunaSearch` records a trial
stopped by a scheduler as COMPLETE with its last reported value). The search report marks those trials as pruned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from orchestrator.design import Trial, _safe, expand, factor_short_name, trial_id
from orchestrator.spec import SearchParam, SweepSpec

__all__ = [
    "BEST",
    "corner_trials",
    "optuna_searcher",
    "optuna_space",
    "search_markdown",
    "search_rows",
    "search_template",
    "search_trial",
]

BEST = "best"
"""The result key Optuna judges a search trial by: its best-so-far objective."""


def search_template(spec: SweepSpec) -> Trial:
    """Return the configuration a search varies: the spec's one design point on its one seed.

    Raises:
        ValueError: If the spec has no `search` (the spec model guarantees one point and one seed otherwise).
    """
    if spec.search is None:
        raise ValueError("the spec has no `search`")
    return expand(spec).trials[0]


def search_trial(template: Trial, backend: str, params: Mapping[str, Any]) -> Trial:
    """Return the trial that trains `template` with the sampled overrides `params` on top.

    Its name lists the sampled values (`lr=0.00123_kl_loss_coef=0.0456_s1`); its id hashes backend, overrides and
    seed like every trial id, so the same sample always maps to the same trial.
    """
    overrides = {**template.overrides, **dict(params)}
    keys = list(params)
    labels = {key: _label(params[key]) for key in keys}
    point = "_".join(f"{factor_short_name(key, keys)}={_safe(labels[key])}" for key in keys) or template.point
    return Trial(
        id=trial_id(backend, overrides, template.seed),
        name=f"{point}_s{template.seed}",
        point=point,
        levels={**template.levels, **labels},
        values={**template.values, **dict(params)},
        seed=template.seed,
        overrides=overrides,
    )


def corner_trials(spec: SweepSpec) -> list[Trial]:
    """Return the search's corner trials, every range at its low end and then at its high end (for `ablate plan`)."""
    assert spec.search is not None
    template = search_template(spec)
    low = {key: _corner(p, high=False) for key, p in spec.search.space.items()}
    high = {key: _corner(p, high=True) for key, p in spec.search.space.items()}
    trials = [search_trial(template, spec.trainer.backend, low)]
    if high != low:
        trials.append(search_trial(template, spec.trainer.backend, high))
    return trials


def _corner(param: SearchParam, *, high: bool) -> Any:
    if param.choices is not None:
        return param.choices[-1 if high else 0]
    value = param.high if high else param.low
    return int(value) if param.type == "int" else value  # type: ignore[arg-type]


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, ".3g")
    return str(value)


def optuna_space(spec: SweepSpec) -> dict[str, Any]:
    """Return the search space as Optuna distributions (log-uniform where `log: true`)."""
    import optuna

    assert spec.search is not None
    space: dict[str, Any] = {}
    for key, p in spec.search.space.items():
        if p.choices is not None:
            space[key] = optuna.distributions.CategoricalDistribution(p.choices)
        elif p.type == "int":
            space[key] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)  # type: ignore[arg-type]
        else:
            space[key] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)  # type: ignore[arg-type]
    return space


def optuna_searcher(spec: SweepSpec) -> Any:
    """Return Tune's `OptunaSearch` over the spec's space: TPE seeded with `search.seed`, judged on `BEST`."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    assert spec.search is not None
    return OptunaSearch(
        space=optuna_space(spec),
        metric=BEST,
        mode=spec.objective.mode,
        sampler=optuna.samplers.TPESampler(seed=spec.search.seed),
        study_name=spec.name,
    )


def search_rows(store: Any, sweep_id: str, mode: str = "max") -> list[dict[str, Any]]:
    """Return one row per search trial, best first: sampled values, best-so-far score, how it ended, pruned or not.

    A trial is `pruned` when ASHA or a collapse rule stopped it; its score is still its best so far, the value
    Optuna was given.
    """
    rows = []
    for record in store.list_trials(sweep_id):
        reason = record.stop_reason or record.status
        rows.append(
            {
                "id": record.id,
                "name": record.name,
                "params": record.values,
                "best_score": record.best_score,
                "best_step": record.best_step,
                "stop_reason": reason,
                "stop_step": record.stop_step,
                "pruned": record.stop_reason is not None and record.stop_reason.pruned,
            }
        )
    sign = -1.0 if mode == "max" else 1.0

    def key(row: dict[str, Any]) -> tuple[bool, float]:
        score = row["best_score"]
        missing = score is None or not math.isfinite(score)
        return missing, 0.0 if missing else sign * score

    return sorted(rows, key=key)


def search_markdown(title: str, rows: list[dict[str, Any]], space_keys: list[str]) -> str:
    """Return the search report in Markdown: trials ranked by best score, pruned trials marked.

    Args:
        title: The heading.
        rows: From `search_rows`.
        space_keys: The searched overrides, one column each.
    """
    shorts = {key: factor_short_name(key, space_keys) for key in space_keys}
    n_pruned = sum(1 for r in rows if r["pruned"])
    lines = [
        f"# {title}",
        "",
        f"{len(rows)} trials, {n_pruned} pruned. A pruned trial (stopped by ASHA or a collapse rule) is ranked by "
        "its best score before it was stopped, the value Optuna was given.",
        "",
        "| rank | trial | " + " | ".join(shorts[k] for k in space_keys) + " | best score | at step | ended | pruned |",
        "| --- | --- | " + " | ".join("---" for _ in space_keys) + " | --- | --- | --- | --- |",
    ]
    for rank, row in enumerate(rows, 1):
        values = [_label(row["params"].get(k, "")) for k in space_keys]
        score = "-" if row["best_score"] is None else f"{row['best_score']:.4g}"
        ended = f"{row['stop_reason']} @ {row['stop_step']}" if row["stop_step"] is not None else row["stop_reason"]
        lines.append(
            f"| {rank} | {row['name']} | {' | '.join(values)} | {score} | {row['best_step'] if row['best_step'] is not None else '-'} "
            f"| {ended} | {'**pruned**' if row['pruned'] else ''} |"
        )
    return "\n".join(lines) + "\n"
