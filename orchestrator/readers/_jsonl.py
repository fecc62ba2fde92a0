"""verl's file logger: one JSON object per line, `{"step": N, "data": {"metric": value, ...}}`."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.history import merge_records
from orchestrator.readers._run import Run, run_name
from orchestrator.readers._values import json_value


def parse_jsonl_line(line: str | bytes) -> tuple[int, dict[str, float]] | None:
    """Return `(step, metrics)` for one file-logger line, or None if it is malformed.

    `null` becomes NaN; values that are not numbers (strings, lists) are left out.
    """
    try:
        record = json.loads(line)
    except ValueError:
        return None
    # Not a file-logger record.
    if not isinstance(record, dict):
        return None
    step, data = record.get("step"), record.get("data")
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(data, dict):
        return None
    metrics = {str(key): value for key, value in ((k, json_value(v)) for k, v in data.items()) if value is not None}
    return step, metrics


def read_jsonl(path: Path) -> Run:
    """Read a verl file-logger JSONL file; malformed lines are skipped and counted.

    Args:
        path: The `.jsonl` file.
    """
    records: list[tuple[int, dict[str, float]]] = []
    n_skipped = 0
    with path.open("rb") as file:
        for line in file:
            # Blank lines are not records.
            if not line.strip():
                continue
            record = parse_jsonl_line(line)
            if record is None:
                n_skipped += 1
                continue
            records.append(record)
    return Run(run_name(path), tuple(merge_records(records)), n_skipped, "jsonl", path)
