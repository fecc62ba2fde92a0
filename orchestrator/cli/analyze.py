"""`ablate analyze PATH...`: the ablation report for runs ablate did not launch (verl logs on disk)."""

from __future__ import annotations

import contextlib
import csv
import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from orchestrator.cli import _console

_LOG_SUFFIXES = (".jsonl", ".log", ".csv", ".txt", ".out")


class _Mode(str, enum.Enum):
    max = "max"
    min = "min"


@dataclass(frozen=True)
class _Labels:
    """A run's factor levels and seed, from `--group-by` or `--labels`."""

    levels: dict[str, str]
    seed: int | None


def analyze(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...", help="Run logs: verl JSONL, console logs, TensorBoard files or folders, wandb CSV; folders are searched."
    ),
    group_by: str = typer.Option(
        None, "--group-by", help="Regex on the run name; named groups are factors, `seed` is the seed, e.g. 'kl(?P<kl>[0-9.]+)_s(?P<seed>\\d+)'."
    ),
    labels: Path = typer.Option(
        None, "--labels", help="YAML or CSV mapping each run (path or name) to its factor levels and `seed`."
    ),
    objective: str = typer.Option(
        None, "--objective", help="The metric runs are judged by (default: the first val-core/.../mean@N, else val/test_score/..., else critic/score/mean)."
    ),
    mode: _Mode = typer.Option(_Mode.max, "--mode", help="Whether a higher (max) or lower (min) objective is better."),
    eval_size: list[str] = typer.Option(
        None, "--eval-size", metavar="SOURCE=N", help="Problems in a data source's evaluation set, e.g. aime24=30 (repeatable): the rules judge drops against its noise."
    ),
    out: Path = typer.Option(Path("ablate-report"), "--out", help="Folder for report.md, report.html, PNGs, trials.csv, summary.json."),
    json_out: bool = typer.Option(
        False, "--json", help="Print, per run: run, best_step, best_score, final_step, collapse, metrics_at_best, metrics_after."
    ),
) -> None:
    """Judge existing runs with the collapse rules and write the ablation report.

    Exits 2 on bad input (a missing file, a bad regex, a regex that matches no run, a run missing from the labels).
    """
    from orchestrator.report import RunInput, build_report, write_report

    if group_by is not None and labels is not None:
        _console.abort("pass either `--group-by` or `--labels`, not both")
    files = _expand(paths)
    runs = _read_all(files)
    names = _unique_names(runs)
    grouping = _group(names, group_by, labels, files)
    _check_objective(objective, runs)
    sizes = parse_eval_sizes(eval_size or [], {m for run in runs for m in run.metric_names})
    inputs = [
        RunInput(run=name, history=run.points, levels=grouping[name].levels, seed=grouping[name].seed)
        for name, run in zip(names, runs)
    ]
    with _console.status(f"Judging {len(inputs)} runs and computing the effects..."):
        report = build_report(
            inputs, objective=objective, mode=mode.value, eval_sizes=sizes, title=f"ablate analyze: {len(inputs)} runs"
        )
    for sentence in report.judged_by:
        _console.err.print(sentence, highlight=False, markup=False)
    for note in report.notes:
        _console.warn(note)
    with _console.status(f"Writing the report into {out}..."):
        try:
            written = write_report(report, out)
        except OSError as exc:
            _console.abort(f"cannot write the report into `{out}`: {exc}")
    if json_out:
        _console.print_json([summary.to_json() for summary in report.summaries])
        return
    _print_runs(report)
    for warning in report.effects.warnings:
        _console.warn(warning)
    _console.out.print(
        f"report: {written.markdown}, {written.html}; tables: {written.csv}, {written.json}", highlight=False
    )


# --- inputs ---------------------------------------------------------------------------------------------------------


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Return the run logs named by `paths`: files as given, folders searched (a TensorBoard log folder is one run)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            _console.abort(f"`{path}` does not exist")
        logs = _logs_in(path) if path.is_dir() else [path]
        if not logs:
            _console.abort(f"`{path}` holds no run logs (*.jsonl, *.log, *.csv, *.txt, *tfevents*, TensorBoard folders)")
        found.extend(logs)
    return list(dict.fromkeys(found))


def _logs_in(folder: Path) -> list[Path]:
    children = sorted(folder.iterdir())
    # TensorBoard writes events.out.tfevents.* into the run's folder: the folder is the run.
    if any(child.name.startswith("events.out.tfevents") for child in children):
        return [folder]
    logs: list[Path] = []
    for child in children:
        if child.is_dir():
            logs.extend(_logs_in(child))
        elif child.suffix in _LOG_SUFFIXES or "tfevents" in child.name:
            logs.append(child)
    return logs


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Any]:
    """Yield a function `advance(description)`: a progress bar on a terminal, a spinner line otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not _console.err.is_terminal:
        with _console.status(f"Reading {total} run log(s)..."):
            yield lambda description: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console.err, transient=True) as progress:
        task = progress.add_task("Reading run logs", total=total)
        yield lambda description: progress.update(task, advance=1, description=description)


def _read_all(files: Sequence[Path]) -> list[Any]:
    """Read every log, warning about skipped malformed lines; abort on an unreadable file."""
    from orchestrator.readers import read_run

    runs = []
    with _progress(len(files)) as advance:
        for path in files:
            try:
                run = read_run(path)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                _console.abort(f"cannot read `{path}`: {exc}")
            advance(f"Read {run.name}")
            runs.append(run)
    for path, run in zip(files, runs):
        if run.n_skipped:
            _console.warn(f"`{path}`: skipped {run.n_skipped} malformed line(s)")
        if not run.points:
            _console.warn(f"`{path}`: no steps found")
    return runs


def _unique_names(runs: Sequence[Any]) -> list[str]:
    """Return each run's name; runs whose names clash are named by their path instead."""
    names = [run.name for run in runs]
    clashes = {name for name in names if names.count(name) > 1}
    return [str(run.path) if run.name in clashes else run.name for run in runs]


def _check_objective(objective: str | None, runs: Sequence[Any]) -> None:
    # No objective given: each run picks its own default.
    if objective is None:
        return
    logged = [run for run in runs if objective in run.metric_names]
    if not logged:
        some = ", ".join(sorted({m for run in runs for m in run.metric_names if m.startswith(("val", "critic/score"))})[:5])
        _console.abort(f"no run logged `--objective` `{objective}` (validation metrics logged: {some or 'none'})")
    for run in runs:
        if run not in logged:
            _console.warn(f"`{run.name}` did not log `{objective}`: it has no best score")


def parse_eval_sizes(pairs: Sequence[str], logged: set[str]) -> dict[str, int]:
    """Return data source -> problems from `--eval-size SOURCE=N` options; abort on a bad one or an unlogged source."""
    from orchestrator.evalsets import eval_source

    sources = sorted({source for source in map(eval_source, logged) if source is not None})
    sizes: dict[str, int] = {}
    for pair in pairs:
        source, sep, text = pair.rpartition("=")
        if not sep or not source:
            _console.abort(f"`--eval-size` takes SOURCE=N, e.g. aime24=30 (got {pair!r})")
        try:
            size = int(text)
        except ValueError:
            size = 0
        if size < 1:
            _console.abort(f"`--eval-size` {source}: the size must be a whole number of problems, at least 1 (got {text!r})")
        if source not in sources:
            _console.abort(f"`--eval-size`: no run logs the data source `{source}` (logged: {', '.join(sources) or 'none'})")
        sizes[source] = size
    return sizes


# --- grouping -------------------------------------------------------------------------------------------------------


def _group(names: Sequence[str], group_by: str | None, labels: Path | None, files: Sequence[Path]) -> dict[str, _Labels]:
    # Neither option: the runs are not grouped into factors.
    if group_by is None and labels is None:
        return {name: _Labels({}, None) for name in names}
    if group_by is not None:
        return _group_by_regex(names, group_by)
    return _group_by_labels(names, files, labels)  # type: ignore[arg-type]


def _group_by_regex(names: Sequence[str], pattern: str) -> dict[str, _Labels]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        _console.abort(f"`--group-by` `{pattern}` is not a valid regex: {exc}")
    grouped = {name: _match_labels(regex, name) for name in names}
    unmatched = [name for name, found in grouped.items() if found is None]
    if len(unmatched) == len(names):
        _console.abort(f"`--group-by` `{pattern}` matches none of the {len(names)} run names (e.g. `{names[0]}`)")
    if unmatched:
        _console.warn(f"`--group-by` matches no level in {len(unmatched)} run(s), left out of the effects: {', '.join(unmatched)}")
    return {name: found or _Labels({}, None) for name, found in grouped.items()}


def _match_labels(regex: re.Pattern[str], name: str) -> _Labels | None:
    match = regex.search(name)
    # No match: the run belongs to no level.
    if match is None:
        return None
    named = {key: value for key, value in match.groupdict().items() if value is not None}
    seed_text = named.pop("seed", None)
    seed = _seed(seed_text, f"`--group-by` seed of `{name}`")
    if regex.groupindex:
        return _Labels(named, seed)
    # Unnamed groups: one factor called `group` (the whole match when there are no groups).
    groups = [g for g in match.groups() if g is not None]
    level = " ".join(groups) if groups else match.group(0)
    return _Labels({"group": level}, seed)


def _seed(text: Any, where: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except (TypeError, ValueError):
        _console.abort(f"{where} must be an integer (got {text!r})")


def _group_by_labels(names: Sequence[str], files: Sequence[Path], labels: Path) -> dict[str, _Labels]:
    table = _read_labels(labels)
    grouped: dict[str, _Labels] = {}
    for name, path in zip(names, files):
        keys = (str(path), str(path.resolve()), name, path.name, path.stem)
        entry = next((table[key] for key in keys if key in table), None)
        if entry is None:
            _console.abort(f"`--labels` `{labels}` has no entry for run `{name}` ({path})")
        levels = {str(k): str(v) for k, v in entry.items() if k != "seed" and v is not None and v != ""}
        grouped[name] = _Labels(levels, _seed(entry.get("seed"), f"`--labels` seed of `{name}`"))
    return grouped


def _read_labels(path: Path) -> dict[str, Mapping[str, Any]]:
    """Return run key -> {factor: level, "seed": seed} from a YAML mapping or a CSV with a `run` or `path` column."""
    if not path.is_file():
        _console.abort(f"`--labels` `{path}` does not exist")
    if path.suffix == ".csv":
        return _read_labels_csv(path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        _console.abort(f"`--labels` `{path}` is not valid YAML: {' '.join(str(exc).split())}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        _console.abort(f"`--labels` `{path}` must map each run (path or name) to its levels, e.g. `run_a: {{kl: 0.01, seed: 1}}`")
    return {str(key): value for key, value in data.items()}


def _read_labels_csv(path: Path) -> dict[str, Mapping[str, Any]]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    key = next((k for k in ("run", "path") if rows and k in rows[0]), None)
    if key is None:
        _console.abort(f"`--labels` `{path}` needs a `run` or `path` column")
    return {row[key]: {k: v for k, v in row.items() if k not in ("run", "path")} for row in rows}


# --- output ---------------------------------------------------------------------------------------------------------


def _print_runs(report: Any) -> None:
    factors = list(report.effects.factors)
    table = Table(title=f"{len(report.summaries)} runs ({report.mode} {', '.join(report.objectives) or 'no objective'})")
    for column in ("run", *factors, "seed", "best step", "best score", "final step", "stop reason", "collapse onset"):
        table.add_column(column, justify="right" if column not in ("run", "stop reason") else "left")
    for s in report.summaries:
        table.add_row(
            s.run,
            *(s.levels.get(f, "–") for f in factors),
            "–" if s.seed is None else str(s.seed),
            "–" if s.best_step is None else str(s.best_step),
            "–" if s.best_score is None else f"{s.best_score:.4g}",
            "–" if s.final_step is None else str(s.final_step),
            s.stop_reason,
            "–" if s.collapse is None else f"{s.collapse.step} ({s.collapse.label})",
        )
    _console.print_table(table)
    for effect in report.effects.by_factor:
        for group in effect.levels:
            rate = group.collapse_rate
            _console.out.print(
                f"{effect.factor}={group.levels[effect.factor]}: {group.n_runs} run(s), collapsed "
                f"{group.n_collapsed}/{group.n_rate}"
                + (f" (95% CI {rate.low:.0%}-{rate.high:.0%})" if rate.has_bounds else "")
                + f", mean best score {group.best_score.estimate:.4g}",
                highlight=False,
            )
