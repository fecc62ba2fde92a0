"""verl's `file` and `console` loggers, in the same formats.

file: `$VERL_FILE_LOGGER_PATH`, else `${VERL_FILE_LOGGER_ROOT:-.}/<project>/<experiment>.jsonl`, truncated when the
run starts (a resumed run included), one unbuffered line per step `{"step":N,"data":{...}}`, NaN and inf as null.
console: one `step:N - key:value - ...` line per step on stdout.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pprint
from pathlib import Path
from typing import Any, BinaryIO


def file_logger_path(project: str, experiment: str) -> Path:
    """Return where verl's file logger writes for this project and experiment."""
    explicit = os.environ.get("VERL_FILE_LOGGER_PATH")
    if explicit:
        return Path(explicit)
    root = Path(os.environ.get("VERL_FILE_LOGGER_ROOT", ".")).expanduser()
    return root / project / f"{experiment}.jsonl"


def jsonl_line(step: int, data: dict[str, Any]) -> bytes:
    """Return one file-logger record, NaN and inf written as null."""
    clean = {key: _finite_or_none(value) for key, value in data.items()}
    return json.dumps({"step": step, "data": clean}, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def console_line(step: int, data: dict[str, Any]) -> str:
    """Return verl's console record: `step:N - key:value - ...` over the numeric values."""
    parts = [f"step:{step}"]
    parts += [f"{key}:{pprint.pformat(value)}" for key, value in data.items() if isinstance(value, numbers.Number)]
    return " - ".join(parts)


class Tracking:
    """Send each step's metrics to the configured loggers ("console", "file")."""

    def __init__(self, project: str, experiment: str, backends: list[str]) -> None:
        self._console = "console" in backends
        self._file: BinaryIO | None = None
        self.path: Path | None = None
        if "file" in backends:
            self.path = file_logger_path(project, experiment)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in close()

    def log(self, data: dict[str, Any], step: int) -> None:
        """Record `data` for `step`: one line per logger, written at once."""
        if self._file is not None:
            self._file.write(jsonl_line(step, data))
        if self._console:
            print(console_line(step, data), flush=True)

    def close(self) -> None:
        """Close the metrics file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return None
        return value if isinstance(value, int) else number
    return value
