"""A submitted spec, checked exactly as `ablate plan` checks it, before anything is queued.

A submission is the spec (YAML text or a JSON mapping) and, optionally, the text of its `trainer.base` file: a spec
submitted from another machine names a base file that only exists there, so `ablate submit` sends its content.
Without it, a relative `trainer.base` is resolved against the service's root folder.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.design import Trial, expand
from orchestrator.errors import AblateError
from orchestrator.spec import SweepSpec, parse_spec
from orchestrator.preflight import preflight

SOURCE = "spec"
BASE_NAME = "base.yaml"


class SubmissionError(AblateError):
    """A submitted spec is invalid; `problems` holds one (field path, message) pair per problem."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


@dataclass
class Checked:
    """A valid submission: the spec, its trials, the text to run, and what was submitted."""

    spec: SweepSpec
    trials: list[Trial]
    submitted_text: str
    run_data: dict[str, Any]
    base_text: str | None
    warnings: list[str] = field(default_factory=list)

    def run_text(self, base_path: Path | None) -> str:
        """Return the spec to run as YAML, with `trainer.base` pointing at `base_path` (an absolute path) if given."""
        data = json.loads(json.dumps(self.run_data))
        if base_path is not None:
            data["trainer"]["base"] = str(base_path)
        return yaml.safe_dump(data, sort_keys=False)


def request_hash(spec: Any, base: str | None) -> str:
    """Return a hash of a submission, to tell a retried request from a different one under the same key."""
    payload = json.dumps({"spec": spec, "base": base}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def check_submission(
    spec: Any, base: str | None, *, root: Path, cpus: float | None = None, gpus: float | None = None, validate: bool = True
) -> Checked:
    """Parse and validate a submission as `ablate plan` does: the spec, its design, each trial against its trainer.

    Args:
        spec: The spec as YAML text or as a mapping.
        base: The text of the spec's `trainer.base` file, or None to read that file on this machine (relative to
            `root`).
        root: The folder a relative `trainer.base` is resolved against when `base` is None.
        cpus, gpus: The Ray cluster's resources, if known: a trial that cannot fit is refused.
        validate: Check every trial against the trainer's own config.

    Raises:
        SubmissionError: With every problem's field path and message.
    """
    text, data = _read(spec)
    if base is not None:
        trainer = data.get("trainer")
        if not isinstance(trainer, dict) or not trainer.get("base"):
            raise SubmissionError([("base", "a base config was sent but the spec has no `trainer.base`")])
        try:
            base_data = yaml.safe_load(base)
        except yaml.YAMLError as exc:
            raise SubmissionError([("base", f"not YAML: {_one_line(exc)}")]) from None
        if not isinstance(base_data, dict):
            raise SubmissionError([("base", f"a base config is a YAML mapping (got {type(base_data).__name__})")])
    with tempfile.TemporaryDirectory(prefix="ablate-submit-") as scratch:
        base_dir = root
        if base is not None:
            base_dir = Path(scratch)
            (base_dir / BASE_NAME).write_text(base)
            data = {**data, "trainer": {**data["trainer"], "base": BASE_NAME}}
        try:
            parsed = parse_spec(data, source=SOURCE, base_dir=base_dir)
            expansion = expand(parsed)
        except AblateError as exc:
            raise SubmissionError([_split(line) for line in str(exc).splitlines()]) from None
        _check_cluster(parsed, cpus, gpus)
        if validate:
            _check_trials(parsed)
    run_data = dict(data)
    if base is None and parsed.trainer.base is not None:
        run_data = {**data, "trainer": {**data["trainer"], "base": str(parsed.trainer.base)}}
    return Checked(parsed, list(expansion.trials), text, run_data, base, list(expansion.warnings))


def _read(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        try:
            data = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            raise SubmissionError([("(spec)", f"not YAML: {_one_line(exc)}")]) from None
        text = spec
    else:
        data = spec
        text = yaml.safe_dump(spec, sort_keys=False)
    if not isinstance(data, dict):
        raise SubmissionError([("(spec)", f"a spec is a mapping with name, trainer, factors, budget (got {type(data).__name__})")])
    return text, data


def _check_cluster(spec: SweepSpec, cpus: float | None, gpus: float | None) -> None:
    problems = []
    if spec.cluster != "local":
        problems.append(("cluster", "the service runs sweeps on its Ray cluster; use `cluster: local`"))
    if spec.resources.nodes > 1:
        problems.append(("resources.nodes", f"each trial runs on one node of the service's Ray cluster (got {spec.resources.nodes})"))
    need_gpus = spec.resources.gpus * spec.resources.nodes
    if gpus is not None and need_gpus > gpus:
        problems.append(("resources.gpus", f"each trial needs {need_gpus} GPU(s) but the service's Ray cluster has {gpus:g}"))
    if cpus is not None and spec.resources.cpus > cpus:
        problems.append(("resources.cpus", f"each trial needs {spec.resources.cpus:g} CPU(s) but the service's Ray cluster has {cpus:g}"))
    if problems:
        raise SubmissionError(problems)


def _check_trials(spec: SweepSpec) -> None:
    """Check each trial against the trainer's config and build its command: the pre-flight `ablate plan` runs."""
    try:
        checked = preflight(spec, Path(tempfile.gettempdir()) / "ablate-submit")
    except AblateError as exc:
        raise SubmissionError([_split(line) for line in str(exc).splitlines()]) from None
    problems = [(f"trials[{trial.name}]", f"trial {trial.name} ({trial.id}): {message}") for trial, message in checked.errors()]
    if problems:
        raise SubmissionError(problems)


def _split(line: str) -> tuple[str, str]:
    """Split a spec error line `spec: <path>: <message>` into its field path and message."""
    line = line.removeprefix(f"{SOURCE}: ")
    path, sep, message = line.partition(": ")
    if path == "(top level)":
        return path, message
    if not sep or " " in path.strip("`"):
        return "(spec)", line
    return path, message


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
