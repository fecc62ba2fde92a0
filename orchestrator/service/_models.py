"""The service API's request and response models (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Submission(BaseModel):
    """A sweep to run: the spec, and the text of its `trainer.base` file when the service cannot read it."""

    spec: str | dict[str, Any] = Field(description="The spec: YAML text, or the same as a JSON object.")
    base: str | None = Field(None, description="The text of the spec's trainer.base file (YAML); None: read it on the server.")


class SweepOut(BaseModel):
    """A sweep as the service knows it."""

    id: str
    name: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    n_trials: int
    trials: dict[str, int] = Field(description="How many trials have each status.")
    submitted: float
    started: float | None
    finished: float | None
    runs: int = Field(description="How many times a worker started it (more than 1: resumed after a service restart).")
    cancel_requested: bool
    error: str | None


class SweepDetail(SweepOut):
    """A sweep with its spec as submitted."""

    spec: str


class TrialOut(BaseModel):
    """One trial of a sweep: status, progress, best, and why it stopped."""

    id: str = Field(description="`<sweep id>:<trial id>`, unique in the service.")
    trial_id: str
    sweep_id: str
    name: str
    seed: int
    levels: dict[str, str]
    status: str
    step: int | None
    best_step: int | None
    best_score: float | None
    stop_reason: str | None
    stop_step: int | None
    collapse_step: int | None
    attempts: int
    why: str | None
    parent: str | None = Field(None, description="For a rescue branch: the trial id of the trial it branches from.")
    from_step: int | None = Field(None, description="For a rescue branch: the parent's step it resumes from.")
    remedy: str | None = Field(None, description="For a rescue branch: its remedy (`kl=0.1`).")


class Submitted(BaseModel):
    """The answer to a submission: the sweep and its trials."""

    sweep: SweepOut
    trials: list[TrialOut]
    warnings: list[str]


class MetricPoint(BaseModel):
    """The metrics a trial logged at one step (NaN and inf as null)."""

    step: int
    metrics: dict[str, float | None]


class Metrics(BaseModel):
    """A trial's metrics, step by step."""

    trial: str
    points: list[MetricPoint]


class Problem(BaseModel):
    """One problem with a submitted spec."""

    field: str = Field(description="The field path, e.g. factors.kl[1].coef.")
    message: str


class SpecProblems(BaseModel):
    """Why a spec was refused."""

    detail: list[Problem]


class Message(BaseModel):
    """An error."""

    detail: str


class Health(BaseModel):
    """The service's state."""

    status: Literal["ok", "starting", "error"]
    ray: str | None
    error: str | None
    sweeps: dict[str, int]


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    docs = {
        401: "Missing or wrong token.",
        404: "No such sweep or trial.",
        409: "Conflicts with the sweep's state or an earlier request.",
        413: "The request body is too large.",
        415: "The body is neither JSON nor YAML.",
        422: "The request or the spec is invalid.",
    }
    return {code: {"model": SpecProblems if code == 422 else Message, "description": docs[code]} for code in (401, *codes)}
