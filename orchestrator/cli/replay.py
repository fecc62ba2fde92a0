"""`ablate replay SPEC --from SWEEP_DIR|LOG...`: what would these pruning settings have saved, and at what cost?"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from orchestrator.cli import _console


def replay(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The spec whose pruning (collapse rules, ASHA) is replayed."),
    more: list[Path] = typer.Argument(None, metavar="[PATH...]", help="More logs after --from (`--from a.jsonl b.jsonl`)."),
    sources: list[Path] = typer.Option(
        ..., "--from", help="A sweep directory (its sweep.db), or run logs: verl JSONL, console logs, TensorBoard, wandb CSV."
    ),
    concurrency: int = typer.Option(
        None, "--concurrency", min=1, help="Trials run at once in the ASHA replay (default: the recorded one; for logs, all at once)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the replay as JSON."),
) -> None:
    """Replay recorded metric histories through a spec's pruning as if the trials were live.

    Reports where each trial would have stopped and why, the steps used against the full budget, whether the best
    configuration is still found, and which healthy trials would have been stopped. For a sweep directory, also
    whether each replayed collapse decision matches the live one. Exits 2 on bad input.
    """
    from orchestrator.errors import AblateError
    from orchestrator.replay import load_logs, load_sweep, replay as run_replay
    from orchestrator.spec import load_spec
    from orchestrator.sweepdir import SweepDir

    paths = [*sources, *(more or [])]
    try:
        spec = load_spec(spec_path)
        sweeps = [p for p in paths if p.is_dir() and SweepDir(p).exists()]
        if sweeps and len(paths) > 1:
            raise AblateError("--from takes one sweep directory, or run logs, not both")
        recorded = None
        if sweeps:
            trials, recorded = load_sweep(sweeps[0])
        else:
            trials = load_logs(paths)
        result = run_replay(spec, trials, concurrency=concurrency or recorded)
    except AblateError as exc:
        _console.abort(str(exc))
    if json_out:
        _console.print_json(result.to_dict())
        return
    live = result.mismatches is not None
    table = Table(title=f"replay of {spec.name}: {result.steps_used}/{result.budget} steps ({result.used_pct:.1f}% of the budget)")
    columns = ["trial", "would stop", "reason", "steps used", "best so far", "best in full"]
    if live:
        columns += ["live stop", "matches live"]
    for column in columns:
        table.add_column(column)
    for t in result.trials:
        row = [
            t.name,
            "" if t.stop_step is None else str(t.stop_step),
            t.reason,
            f"{t.steps_used}/{t.budget}" + (" (history ends early)" if t.truncated and t.reason == "completed" else ""),
            _fmt(t.best_score),
            _fmt(t.full_best_score),
        ]
        if live:
            row += [f"{t.live_reason or ''} @ {t.live_step}" if t.live_reason else "", _yes(t.live_match)]
        table.add_row(*row)
    _console.print_table(table)
    out = _console.out
    for t in result.trials:
        what = f"seed mean of {t.evidence['group']}" if "group" in t.evidence else "signal"
        why = t.evidence.get("reason") or (
            f"rung {t.evidence['rung']:g}: {what} {t.evidence['value']:.4g} below the cutoff {t.evidence['cutoff']:.4g}"
            if t.reason == "asha" and t.evidence.get("cutoff") is not None
            else ""
        )
        if why:
            out.print(f"{t.name}: {why}", highlight=False)
    if result.concurrency is not None:
        out.print(f"ASHA replayed in the recorded arrival order, {result.concurrency} trial(s) at a time", highlight=False)
    kept = "kept" if result.best_kept else "LOST"
    out.print(
        f"best configuration: {result.best_config} ({_fmt(result.best_config_score)}); without pruning: "
        f"{result.unpruned_best_config} ({_fmt(result.unpruned_best_score)}): {kept}",
        highlight=False,
    )
    out.print(f"healthy trials stopped: {len(result.lost)}" + (f" ({', '.join(result.lost)})" if result.lost else ""), highlight=False)
    if live:
        out.print(f"collapse decisions that differ from the live run: {result.mismatches}", highlight=False)
    _print_calibration(result)


def _print_calibration(result) -> None:  # noqa: ANN001
    """Per rule and per leading sign, against each curve's own ground truth."""
    from orchestrator.calibration import COLLAPSE_FRACTION, ONSET_FRACTION, spread

    rules = Table(
        title=(
            f"collapse rules on these trials (a collapse: below {COLLAPSE_FRACTION:.0%} of its best to the end; onset: "
            f"the first evaluation staying below {ONSET_FRACTION:.0%})"
        )
    )
    for column in ("rule", "in time", "flagged at its end", "late", "missed", "latency (evals)", "false stops"):
        rules.add_column(column)
    for r in result.rules:
        rules.add_row(
            r.rule, f"{r.in_time}/{r.collapsing}", str(r.flagged_at_end), str(r.late), str(r.missed),
            spread(r.latencies), f"{r.false_stops}/{r.healthy}",
        )
    _console.print_table(rules)
    signs = Table(title="leading signs (warnings, never stops)")
    for column in ("sign", "warned before the onset", "lead (steps)", "after", "never", "false alarms"):
        signs.add_column(column)
    for s in result.signs:
        signs.add_row(
            s.sign, f"{s.before}/{s.collapsing_logged}", spread(s.leads), str(s.after), str(s.never),
            f"{s.false_alarms}/{s.healthy_logged}",
        )
    _console.print_table(signs)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _yes(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")
