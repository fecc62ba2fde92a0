"""TensorBoard event files, read with TensorBoard's own `EventAccumulator` (installed with verl)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.history import StepMetrics
from orchestrator.readers._run import Run, run_name

# 0 keeps every event; the default keeps a sample of 10,000 scalars per tag.
_KEEP_ALL = {"scalars": 0, "tensors": 0}


def read_tensorboard(path: Path) -> Run:
    """Read every scalar of a TensorBoard event file, or of every event file in a folder.

    Scalars written as tensors (TF2 summaries) are read too. A restart shows as a tag's step going backwards:
    that tag's values after the step it went back to belong to the superseded attempt and are dropped, and a later
    value for the same step wins (as `orchestrator.history.merge_records` does for line-based logs). A cut-off
    file is read up to its last whole record; `n_skipped` is always 0.

    Args:
        path: An event file or a folder holding event files.
    """
    # Imported here: TensorBoard takes a few hundred ms to import, and live trials never read event files.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance=_KEEP_ALL)
    accumulator.Reload()
    tags = accumulator.Tags()
    by_step: dict[int, dict[str, float]] = {}
    for tag in tags.get("scalars", []):
        for step, value in _last_attempt((event.step, float(event.value)) for event in accumulator.Scalars(tag)):
            by_step.setdefault(step, {})[tag] = value
    for tag in tags.get("tensors", []):
        for step, value in _last_attempt(_tensor_scalars(accumulator.Tensors(tag))):
            by_step.setdefault(step, {})[tag] = value
    points = tuple(StepMetrics(step, by_step[step]) for step in sorted(by_step))
    return Run(run_name(path), points, 0, "tensorboard", path)


def _tensor_scalars(events: Iterable[Any]) -> Iterator[tuple[int, float]]:
    from tensorboard.util import tensor_util

    for event in events:
        array = tensor_util.make_ndarray(event.tensor_proto)
        # Only single numbers are scalars; histograms and text are not metrics.
        if array.size == 1 and array.dtype.kind in "biuf":
            yield event.step, float(array.reshape(()))


def _last_attempt(values: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    by_step: dict[int, float] = {}
    last_step: int | None = None
    for step, value in values:
        # The step went backwards: a new attempt; forget what the old one logged after it.
        if last_step is not None and step < last_step:
            by_step = {s: v for s, v in by_step.items() if s <= step}
        by_step[step] = value
        last_step = step
    return sorted(by_step.items())
