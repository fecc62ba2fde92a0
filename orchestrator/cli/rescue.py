"""`ablate rescue SWEEP_DIR --remedy kl=0.1 --remedy rollout_n=8`: branch a sweep's collapsed trials with remedies.

Each trial a collapse rule stopped is resumed from its best checkpoint (or, with `--from last_healthy`, the latest
checkpoint before its collapse onset) once per remedy, for the rest of its budget, as a new trial of the same
sweep (`orchestrator.rescue`). Everything is checked before Ray starts: the remedies, the trials, their
checkpoints, the branches' settings against the trainer's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from orchestrator.cli import _console


def rescue(
    sweep_dir: Path = typer.Argument(..., metavar="SWEEP_DIR", help="A sweep directory (`ablate run --out`)."),
    remedy: list[str] = typer.Option(
        ..., "--remedy", help="A remedy: factor=level (kl=0.1, rollout_n=8, entropy_coeff=0.001, a dotted key); "
        "several factors at once separated by commas; repeat the option for more remedies."
    ),
    trial: list[str] = typer.Option(None, "--trial", help="Branch only this trial (by name; repeatable). Default: every trial a collapse rule stopped."),
    from_: str = typer.Option("best", "--from", help="Branch from the trial's `best` checkpoint or its `last_healthy` one (before the collapse onset)."),
    address: str = typer.Option(None, "--address", envvar="RAY_ADDRESS", help="An existing Ray cluster (default: start a local one)."),
    cpus: int = typer.Option(None, "--cpus", min=1, help="CPUs of the local Ray cluster (default: all)."),
    gpus: int = typer.Option(None, "--gpus", min=0, help="GPUs of the local Ray cluster, may be logical (default: detected)."),
) -> None:
    """Branch the collapsed trials of a finished sweep from a checkpoint, once per remedy, and run the branches.

    The branches are trials of the same sweep: `ablate status` and `ablate report` show them. Running the same
    command again resumes the rescue. Exit status: as `ablate run` (2 on bad input: nothing launched).
    """
    from orchestrator.cli.run import run_with_progress
    from orchestrator.engine import RescueRequest, run_sweep
    from orchestrator.errors import AblateError
    from orchestrator.store import SQLiteStore

    if from_ not in ("best", "last_healthy"):
        _console.abort(f"--from must be best or last_healthy (got {from_!r})")
    try:
        remedies = [_remedy(text) for text in remedy]
        store = SQLiteStore(_folder(sweep_dir).db)
        spec, spec_text, parents = _plan(store, sweep_dir, remedies, trial, from_)
    except AblateError as exc:
        _console.abort(str(exc))
    store.close()
    request = RescueRequest(parents=tuple(p.id for p in parents), remedies=tuple(remedies), how=from_)
    names = ", ".join(p.name for p in parents)
    _console.info(f"sweep {spec.name}: {len(parents)} trial(s) x {len(remedies)} remedies ({', '.join(r.label for r in remedies)}), from {from_}: {names}")
    outcome = run_with_progress(
        spec.name,
        len(request.parents) * len(request.remedies),
        lambda on_start: run_sweep(
            spec, spec_text, sweep_dir, rescue=request, on_start=on_start, address=address, num_cpus=cpus, num_gpus=gpus
        ),
    )
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items() if n)
    _console.out.print(f"sweep {spec.name}: {counts}; see `ablate status {sweep_dir}` and `ablate report {sweep_dir}`", highlight=False)
    if outcome.interrupted:
        _console.out.print("interrupted: run the same `ablate rescue` command again to resume", highlight=False)
        raise typer.Exit(130)
    if outcome.failed:
        _console.abort(f"{len(outcome.failed)} trial(s) failed after their retries; run the same command again to retry them", code=1)


def _folder(sweep_dir: Path) -> Any:
    from orchestrator.sweepdir import SweepDir

    return SweepDir(sweep_dir).require()


def _remedy(text: str) -> Any:
    """Parse `kl=0.1,rollout_n=8` into a remedy (values read as YAML scalars)."""
    import yaml

    from orchestrator.errors import AblateError
    from orchestrator.spec import parse_remedy

    raw: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise AblateError(f"--remedy {text}: write factor=level, e.g. kl=0.1 or rollout_n=8 (got {part!r})")
        raw[key.strip()] = yaml.safe_load(value)
    try:
        return parse_remedy(raw)
    except ValueError as error:
        raise AblateError(f"--remedy {text}: {error}") from None


def _plan(store: Any, sweep_dir: Path, remedies: list[Any], names: list[str] | None, how: str) -> tuple[Any, str, list[Any]]:
    """Return the sweep's spec, its text and the trials to branch; raise AblateError if the rescue cannot run."""
    from orchestrator.errors import AblateError
    from orchestrator.rescue import branch_point, branch_trial, check_remedies, is_rescuable
    from orchestrator.spec import parse_spec, read_yaml
    from orchestrator.trainers import RunContext, get_trainer

    folder = _folder(sweep_dir)
    sweeps = store.list_sweeps()
    if not sweeps:
        raise AblateError(f"{folder.db}: holds no sweep")
    sweep = sweeps[0]
    if sweep.status == "running":
        raise AblateError(f"sweep {sweep.id} in {sweep_dir} is running; rescue it once it has ended")
    spec = parse_spec(read_yaml(folder.spec), source=str(folder.spec), resolve_base=False)
    own = [r for r in store.list_trials(sweep.id) if r.parent is None]
    if names:
        by_name = {r.name: r for r in own}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise AblateError(f"--trial {unknown[0]}: no such trial in sweep {sweep.id} (trials: {', '.join(by_name)})")
        parents = [by_name[n] for n in names]
        for record in parents:
            if not is_rescuable(record):
                ended = record.stop_reason or record.status
                raise AblateError(f"--trial {record.name}: no collapse rule stopped it (it ended {ended}); only a collapsed trial is rescued")
    else:
        parents = [r for r in own if is_rescuable(r)]
        if not parents:
            raise AblateError(f"no trial of sweep {sweep.id} was stopped by a collapse rule: nothing to rescue")
    check_remedies([p.trial() for p in parents], remedies)
    branches = []
    for record in parents:
        point = branch_point(record, folder.trial(record.name) / "checkpoints", how)
        branches += [branch_trial(record.trial(), r, point.step) for r in remedies]
    trainer = get_trainer(spec.trainer.backend)
    problems = trainer.validate(branches, lambda t: RunContext(workdir=folder.trial(t.name), project=spec.name))
    for child in branches:
        for problem in problems.get(child.id, []):
            raise AblateError(f"branch {child.name}: {problem}")
    return spec, sweep.spec, parents
