"""Readers of run logs into `Run`s: verl's file logger (JSONL), verl's console output (old and new formats),
TensorBoard event files and wandb history CSV exports; and `JsonlTail`, which follows a live trial's JSONL.

`read_run(path)` picks the reader from the path and the file's first bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from orchestrator.readers._console import parse_console_line, read_console
from orchestrator.readers._jsonl import parse_jsonl_line, read_jsonl
from orchestrator.readers._run import Run
from orchestrator.readers._tail import JsonlTail
from orchestrator.readers._tensorboard import read_tensorboard
from orchestrator.readers._wandb_csv import read_wandb_csv

__all__ = [
    "FORMATS",
    "JsonlTail",
    "Run",
    "detect_format",
    "parse_console_line",
    "parse_jsonl_line",
    "read_console",
    "read_jsonl",
    "read_run",
    "read_tensorboard",
    "read_wandb_csv",
]

FORMATS: dict[str, Callable[[Path], Run]] = {
    "console": read_console,
    "jsonl": read_jsonl,
    "tensorboard": read_tensorboard,
    "wandb_csv": read_wandb_csv,
}
"""Each format's reader, by the name `Run.format` gives it."""

_SNIFF_BYTES = 65536


def detect_format(path: Path) -> str:
    """Return the format of a run log: `jsonl`, `console`, `tensorboard` or `wandb_csv`.

    A folder or a file whose name contains `tfevents` is TensorBoard's; `.jsonl` and `.csv` name their formats.
    Any other file is judged by its first line: a JSON object is the file logger's, a header with `_step` is a
    wandb export, anything else is console output.

    Raises:
        FileNotFoundError: If the path does not exist.
        ValueError: If a folder holds no TensorBoard event file.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_dir():
        if not any("tfevents" in child.name for child in path.rglob("*")):
            raise ValueError(f"{path} is a folder without TensorBoard event files (`*tfevents*`).")
        return "tensorboard"
    if "tfevents" in path.name:
        return "tensorboard"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".csv":
        return "wandb_csv"
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    first = next((line.strip() for line in head.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if "_step" in first.split(","):
        return "wandb_csv"
    return "console"


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run log of any supported format.

    Args:
        path: A JSONL, console log, wandb CSV, TensorBoard event file or TensorBoard log folder.

    Raises:
        FileNotFoundError: If the path does not exist.
        ValueError: If the path is a folder without event files, or a CSV without a `_step` column.
    """
    path = Path(path)
    return FORMATS[detect_format(path)](path)
