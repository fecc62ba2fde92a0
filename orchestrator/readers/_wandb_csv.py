"""wandb history exported as CSV (`run.history()` or `scan_history()` saved with pandas): `_step` plus metrics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from orchestrator.history import merge_records
from orchestrator.readers._run import Run, run_name
from orchestrator.readers._values import text_value

STEP_COLUMN = "_step"


def read_wandb_csv(path: Path) -> Run:
    """Read a wandb history CSV; malformed rows are skipped and counted.

    wandb's own columns (`_runtime`, `_timestamp`, ...) and unnamed index columns are left out. An empty cell
    means the metric was not logged at that step; a cell that is not a number (media, text) is left out.

    Args:
        path: The CSV file.

    Raises:
        ValueError: If the file has no `_step` column.
    """
    records: list[tuple[int, dict[str, float]]] = []
    n_skipped = 0
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        reader = csv.DictReader(file)
        if STEP_COLUMN not in (reader.fieldnames or []):
            raise ValueError(f"{path} has no `{STEP_COLUMN}` column: it is not a wandb history export.")
        metrics = [name for name in reader.fieldnames or [] if name and not name.startswith("_")]
        for row in reader:
            step = _step(row)
            # A row with a bad step, or with too few or too many cells, is damaged.
            if step is None or None in row or any(row[name] is None for name in metrics):
                n_skipped += 1
                continue
            values = {name: text_value(row[name]) for name in metrics if row[name].strip()}
            records.append((step, {name: value for name, value in values.items() if value is not None}))
    return Run(run_name(path), tuple(merge_records(records)), n_skipped, "wandb_csv", path)


def _step(row: dict[str | None, str | None]) -> int | None:
    value = text_value(row.get(STEP_COLUMN) or "")
    if value is None or not math.isfinite(value) or not value.is_integer():
        return None
    return int(value)
