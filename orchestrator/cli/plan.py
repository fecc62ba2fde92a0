"""`ablate plan SPEC`: the trials a spec would run, each validated against its trainer's own config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli import _console


def plan(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The sweep spec (YAML)."),
    json_out: bool = typer.Option(False, "--json", help="Print the trials as JSON: id, name, factors, seed, argv."),
    out: Path = typer.Option(None, "--out", help="Sweep directory the argv points at (default: runs/<name>)."),
    hours_per_trial: float = typer.Option(
        None, "--hours-per-trial", min=0, help="Estimated hours per trial for the GPU-hours total (default: the spec's budget.hours_per_trial)."
    ),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Check every trial against the trainer's config."),
) -> None:
    """Show the trials a sweep would run, each checked against its trainer's own config, before anything runs.

    Exits 0 when every trial is valid, 2 when the spec or any trial is not.
    """
    from orchestrator.errors import AblateError
    from orchestrator.preflight import preflight
    from orchestrator.spec import load_spec

    try:
        spec = load_spec(spec_path)
        sweep_dir = out if out is not None else Path("runs") / spec.name
        if validate:
            with _console.status(f"Checking the trials against {spec.trainer.backend}'s config..."):
                checked = preflight(spec, sweep_dir)
        else:
            checked = preflight(spec, sweep_dir, validate=False)
    except AblateError as exc:
        _console.abort(str(exc))
    for warning in checked.warnings:
        _console.warn(warning)
    trials, problems, argvs = checked.checked, checked.problems, checked.argv
    n_bad = sum(1 for t in trials if problems[t.id])

    if json_out:
        _console.print_json(
            [
                {
                    "id": t.id,
                    "name": t.name,
                    "factors": t.values,
                    "seed": t.seed,
                    "argv": argvs[t.id],
                    "errors": problems[t.id],
                    **({"branch_of": t.parent, "remedy": t.remedy} if t.parent is not None else {}),
                }
                for t in trials
            ]
        )
    else:
        _print_plan(spec, [t for t in trials if t.parent is None], problems, n_bad, validate, hours_per_trial)
        if spec.search is not None:
            _print_search(spec, hours_per_trial)
        if spec.pruning.rescue is not None:
            _print_rescue(spec, [t for t in trials if t.parent is not None], problems, validate)
    for t in trials:
        for problem in problems[t.id]:
            _console.err.print(f"[bold red]error:[/] {spec_path}: trial {t.name} ({t.id}): {problem}", highlight=False)
    if n_bad:
        raise typer.Exit(2)


def _print_plan(spec, trials, problems, n_bad: int, validated: bool, hours_per_trial: float | None) -> None:  # noqa: ANN001
    from orchestrator.design import factor_short_name
    factor_names = list(spec.factors)
    title = f"{spec.name}: {len(trials)} trials ({spec.design.type}, {len(spec.seed_list)} seed(s) each)"
    if spec.search is not None:
        title = f"{spec.name}: the search's corners (every range at its low end, then at its high end)"
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("trial", no_wrap=True)
    table.add_column("id", no_wrap=True)
    for name in factor_names:
        table.add_column(factor_short_name(name, factor_names))
    searched = list(spec.search.space) if spec.search is not None else []
    for key in searched:
        table.add_column(factor_short_name(key, searched))
    table.add_column("seed", justify="right")
    table.add_column("GPUs", justify="right")
    table.add_column("check")
    gpus = spec.resources.gpus * spec.resources.nodes
    for i, t in enumerate(trials, 1):
        if not validated:
            check = "[dim]skipped[/]"
        elif problems[t.id]:
            check = f"[red]{len(problems[t.id])} error(s)[/]"
        else:
            check = "[green]valid[/]"
        levels = [t.levels.get(n, "") for n in factor_names] + [t.levels.get(k, "") for k in searched]
        table.add_row(str(i), t.name, t.id, *levels, str(t.seed), str(gpus), check)
    _console.print_table(table)
    hours = hours_per_trial if hours_per_trial is not None else spec.budget.hours_per_trial
    n_points = len({t.point for t in trials})
    total = f"{len(trials)} trials = {n_points} points x {len(spec.seed_list)} seeds; {gpus} GPU(s) per trial"
    if hours is not None:
        total += f"; about {len(trials) * hours * max(gpus, 1):,.0f} {'GPU' if gpus else 'CPU'}-hours at {hours:g} h per trial"
    else:
        total += "; GPU-hours: set budget.hours_per_trial or --hours-per-trial for an estimate"
    if spec.search is None:
        _console.out.print(total, highlight=False)
    objective = spec.objective.metric
    if objective == "auto":
        objective = "auto (the val-core/<source>/<var>/mean@N of the largest evaluation set the trainer logs)"
    if spec.objective.eval_sizes:
        sizes = ", ".join(f"{source} {n}" for source, n in spec.objective.eval_sizes.items())
        objective += f"; evaluation sets: {sizes} problems"
    _console.out.print(
        f"objective: {objective}, {spec.objective.mode}; budget: {spec.budget.max_steps} steps, eval every "
        f"{spec.budget.eval_every}, checkpoint every {spec.budget.save_every}",
        highlight=False,
    )
    _console.out.print(f"runs on: {_where(spec)}", highlight=False)
    if validated:
        verdict = "all valid" if not n_bad else f"{n_bad} of {len(trials)} trials invalid"
        _console.out.print(f"{spec.trainer.backend} config check: {verdict}", highlight=False)


def _print_rescue(spec, branches, problems, validated: bool) -> None:  # noqa: ANN001
    rescue = spec.pruning.rescue
    checks = []
    for branch in branches:
        verdict = "not checked" if not validated else ("invalid" if problems[branch.id] else "valid")
        checks.append(f"{branch.remedy} ({verdict})")
    _console.out.print(
        f"rescue: a trial a collapse rule stops is branched from its {rescue.from_.replace('_', ' ')} checkpoint once "
        f"per remedy, for the rest of its budget: {', '.join(checks)}",
        highlight=False,
    )


def _print_search(spec, hours_per_trial: float | None) -> None:  # noqa: ANN001
    """Print what a `search:` spec samples and what it costs."""
    search = spec.search
    gpus = spec.resources.gpus * spec.resources.nodes
    out = _console.out
    out.print(
        f"search: optuna (TPE, seed {search.seed}), {search.num_samples} trials sampled around the configuration "
        f"above, seed {spec.seed_list[0]}, each with the spec's pruning; Optuna is given each trial's best score so far",
        highlight=False,
    )
    for key, param in search.space.items():
        out.print(f"  {key}: {param.describe()}", highlight=False)
    hours = hours_per_trial if hours_per_trial is not None else spec.budget.hours_per_trial
    total = f"{search.num_samples} trials x 1 seed; {gpus} GPU(s) per trial"
    if hours is not None:
        total += f"; at most {search.num_samples * hours * max(gpus, 1):,.4g} {'GPU' if gpus else 'CPU'}-hours at {hours:g} h per trial"
    out.print(total, highlight=False)


def _where(spec: Any) -> str:
    """Say where the trials run: a Ray cluster, or one sbatch job per trial with its options."""
    if spec.cluster == "local":
        return "a Ray cluster (`cluster: local`), one trainer process per trial"
    slurm = spec.cluster.slurm
    options = [f"--time={slurm.time}", f"--nodes={spec.resources.nodes}"]
    if spec.resources.gpus:
        options.append(f"--gpus-per-node={spec.resources.gpus}")
    options += [f"--{k}={v}" for k in ("partition", "account", "qos", "constraint") if (v := getattr(slurm, k))]
    options += list(slurm.extra_sbatch)
    jobs = "all submitted at once" if slurm.max_jobs is None else f"at most {slurm.max_jobs} submitted at once"
    return f"Slurm, one sbatch job per trial ({' '.join(options)}; {jobs}; requeue {'on' if slurm.requeue else 'off'})"
