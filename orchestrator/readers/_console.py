"""verl's console logger: `step:N - metric:value - ...` lines among everything else the driver prints.

Both formats are read:

- new verl: `(TaskRunner pid=N) step:N - val-core/openai/gsm8k/acc/mean@1:np.float64(0.5) - ...`, validation
  merged into the step's line; the prefix may also be `(TaskRunnerV1 pid=N)`;
- old verl: `(main_task pid=N) step:N - ...` with 3-decimal floats, validation merged into the step's line as
  `val/test_score/<source>`, and the validation before training on its own line as `test_score/<source>`
  (renamed `val/test_score/<source>` here, the name the same metric has on later steps).

Ray's ANSI colour codes and `[repeated Nx across cluster]` suffixes are removed. Repeated steps after a restart
follow `orchestrator.history.merge_records`: the last attempt wins.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.history import merge_records
from orchestrator.readers._run import Run, run_name
from orchestrator.readers._values import text_value

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RAY_PREFIX = re.compile(r"^\s*\([^()]*\bpid=\d+[^()]*\)\s*")
_RAY_REPEATED = re.compile(r"\s*\[repeated \d+x across cluster\]\s*$")
_STEP = re.compile(r"^step:(?P<step>\S*)(?: - (?P<body>.*))?$")
_OLD_VALIDATION = "test_score/"


def strip_decorations(line: str) -> str:
    """Return a console line without colour codes, Ray's `(Actor pid=N)` prefix and repeat suffix."""
    line = _ANSI.sub("", line).rstrip("\r\n")
    line = _RAY_PREFIX.sub("", line, count=1)
    return _RAY_REPEATED.sub("", line).strip()


def parse_console_line(line: str) -> tuple[int, dict[str, float]] | None:
    """Parse one console line.

    Returns:
        `(step, metrics)` for a step line, None for any other line (ordinary output).

    Raises:
        ValueError: If the step line is malformed: a step that is not a number, a pair without `:`, or a value
            that is not a number (a line cut short or garbled).
    """
    match = _STEP.match(strip_decorations(line))
    # Ordinary output, not a metrics line.
    if match is None:
        return None
    if not match["step"].isdigit():
        raise ValueError(f"the step {match['step']!r} is not a number")
    metrics: dict[str, float] = {}
    for pair in match["body"].split(" - ") if match["body"] else []:
        key, colon, raw = pair.rpartition(":")
        value = text_value(raw) if colon else None
        if not key or value is None:
            raise ValueError(f"{pair!r} is not a `metric:number` pair")
        metrics[_rename(key.strip())] = value
    return int(match["step"]), metrics


def read_console(path: Path) -> Run:
    """Read a verl console log (old or new format); malformed step lines are skipped and counted.

    Args:
        path: The log file.
    """
    records: list[tuple[int, dict[str, float]]] = []
    n_skipped = 0
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                record = parse_console_line(line)
            except ValueError:
                n_skipped += 1
                continue
            if record is not None:
                records.append(record)
    return Run(run_name(path), tuple(merge_records(records)), n_skipped, "console", path)


def _rename(key: str) -> str:
    # Old verl logged the validation before training as `test_score/<source>`, later ones as `val/test_score/...`.
    return f"val/{key}" if key.startswith(_OLD_VALIDATION) else key
