"""`JsonlTail`: follow a live trial's verl file-logger JSONL as it grows."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.history import StepMetrics
from orchestrator.readers._jsonl import parse_jsonl_line


class JsonlTail:
    """Read the records appended to a file-logger JSONL since the last poll.

    The file may not exist yet (the trainer has not started logging), and its last line may be half written:
    a line is read only once its newline is there. If the file shrinks (verl truncates it when a run starts
    again on the same path), reading starts again from its beginning. Malformed lines are skipped and counted
    in `n_skipped`.

    Args:
        path: The JSONL file the trainer writes (`VERL_FILE_LOGGER_PATH`).

    Example:
        >>> tail = JsonlTail("/nonexistent/metrics.jsonl")
        >>> tail.poll()
        []
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._offset = 0
        self._partial = b""
        self.n_skipped = 0

    @property
    def path(self) -> Path:
        """Return the file being followed."""
        return self._path

    def poll(self) -> list[StepMetrics]:
        """Return the points of the lines completed since the last call, one per line, in file order.

        The same step may come twice (verl logs the validation before training as its own record); fold the
        points with `orchestrator.history.merge_points` to get one point per step.
        """
        try:
            size = self._path.stat().st_size
        except FileNotFoundError:
            return []
        # The file was truncated: a new run is writing it from the start.
        if size < self._offset:
            self._offset, self._partial = 0, b""
        with self._path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        points: list[StepMetrics] = []
        for line in lines:
            if not line.strip():
                continue
            record = parse_jsonl_line(line)
            if record is None:
                self.n_skipped += 1
                continue
            points.append(StepMetrics(*record))
        return points
