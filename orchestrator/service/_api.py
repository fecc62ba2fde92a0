"""The service's JSON API: submit, list, follow, cancel sweeps; read trials' metrics and reports."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from orchestrator.service._db import DONE, KeyConflict, ServiceSweep
from orchestrator.service._models import Health, Metrics, Submission, Submitted, SweepDetail, SweepOut, TrialOut, responses
from orchestrator.service._state import ReportError, Service, finite
from orchestrator.service._submit import SubmissionError

MAX_BODY = 1_000_000
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")

router = APIRouter()


def get_service(request: Request) -> Service:
    """Return the running app's service (a FastAPI dependency)."""
    return request.app.state.service


def message(status: int, detail: str) -> JSONResponse:
    """Return an error response with one line of detail."""
    return JSONResponse({"detail": detail}, status_code=status)


def _get_or_404(service: Service, sweep_id: str) -> ServiceSweep | JSONResponse:
    try:
        return service.db.get_sweep(sweep_id)
    except KeyError:
        return message(404, f"no sweep {sweep_id!r}")


@router.post(
    "/sweeps",
    status_code=201,
    response_model=Submitted,
    responses={200: {"model": Submitted, "description": "Already submitted with this Idempotency-Key."}, **responses(409, 413, 415, 422)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": Submission.model_json_schema()},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def submit_sweep(
    request: Request,
    idempotency_key: str | None = Header(None, min_length=1, max_length=200, description="Retries with the same key return the same sweep."),
    service: Service = Depends(get_service),
) -> Any:
    """Validate a spec exactly as `ablate plan` does and queue its sweep; 422 (nothing queued) on a bad spec."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return message(413, f"the request body is larger than {MAX_BODY} bytes")
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if media in YAML_TYPES:
            submission = Submission(spec=body.decode())
        elif media == "application/json" or media.endswith("+json"):
            submission = Submission.model_validate_json(body)
        else:
            return message(415, f"send the spec as application/json or application/yaml (got {media})")
    except (ValidationError, UnicodeDecodeError) as exc:
        problems = _body_problems(exc)
        return JSONResponse({"detail": problems}, status_code=422)
    try:
        sweep, new, warnings = await run_in_threadpool(service.submit, submission, idempotency_key)
    except SubmissionError as exc:
        return JSONResponse({"detail": [{"field": f, "message": m} for f, m in exc.problems]}, status_code=422)
    except KeyConflict:
        return message(409, "this Idempotency-Key was used with a different request")
    payload = await run_in_threadpool(lambda: {"sweep": service.sweep_out(sweep), "trials": service.trials_out(sweep), "warnings": warnings})
    return JSONResponse(payload, status_code=201 if new else 200)

@router.get("/sweeps", response_model=list[SweepOut], responses=responses())
def list_sweeps(
    status: Literal["queued", "running", "completed", "failed", "cancelled"] | None = None, service: Service = Depends(get_service)
) -> Any:
    """Every sweep, oldest first (or those with `status`)."""
    return JSONResponse([service.sweep_out(s) for s in service.db.list_sweeps(status=status)])

@router.get("/sweeps/{sweep_id}", response_model=SweepDetail, responses=responses(404))
def get_sweep(sweep_id: str, service: Service = Depends(get_service)) -> Any:
    """One sweep: its status, its trials' counts by status, and its spec."""
    sweep = _get_or_404(service, sweep_id)
    if isinstance(sweep, JSONResponse):
        return sweep
    return JSONResponse({**service.sweep_out(sweep), "spec": sweep.spec})

@router.get("/sweeps/{sweep_id}/trials", response_model=list[TrialOut], responses=responses(404))
def get_trials(sweep_id: str, service: Service = Depends(get_service)) -> Any:
    """A sweep's trials: status, step, best score and step, collapse onset, stop reason and why."""
    sweep = _get_or_404(service, sweep_id)
    if isinstance(sweep, JSONResponse):
        return sweep
    return JSONResponse(service.trials_out(sweep))

@router.get("/trials/{trial_id}/metrics", response_model=Metrics, responses=responses(404))
def get_metrics(
    trial_id: str,
    keys: list[str] | None = Query(None, description="Metric names (repeat the parameter, or separate with commas); default: all."),
    since: int | None = Query(None, ge=0, description="Only the steps after this one."),
    service: Service = Depends(get_service),
) -> Any:
    """A trial's metrics by step (`<sweep id>:<trial id>`), optionally some keys only and only after a step."""
    sweep_id, sep, inner = trial_id.rpartition(":")
    if not sep:
        return message(404, f"no trial {trial_id!r} (trial ids are <sweep id>:<trial id>)")
    sweep = _get_or_404(service, sweep_id)
    if isinstance(sweep, JSONResponse):
        return message(404, f"no trial {trial_id!r}")
    wanted = [k for item in keys or [] for k in item.split(",") if k] or None
    try:
        history = service.store(sweep.id).get_history(inner, keys=wanted)
    except KeyError:
        return message(404, f"no trial {trial_id!r}")
    points = [{"step": p.step, "metrics": finite(dict(p.metrics))} for p in history if since is None or p.step > since]
    return JSONResponse({"trial": trial_id, "points": points})

@router.get(
    "/sweeps/{sweep_id}/report",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The HTML report (self-contained)."}, **responses(404, 409)},
)
def get_report(sweep_id: str, service: Service = Depends(get_service)) -> Any:
    """The sweep's ablation report as self-contained HTML (the same as `ablate report` writes)."""
    sweep = _get_or_404(service, sweep_id)
    if isinstance(sweep, JSONResponse):
        return sweep
    try:
        html = service.report(sweep)
    except ReportError as exc:
        return message(409, f"no report for sweep {sweep_id!r} yet: {exc}")
    return HTMLResponse(html.read_text())

@router.post("/sweeps/{sweep_id}/cancel", response_model=SweepOut, status_code=202, responses={200: {"model": SweepOut, "description": "Already cancelled."}, **responses(404, 409)})
def cancel_sweep(sweep_id: str, service: Service = Depends(get_service)) -> Any:
    """Cancel a sweep: a queued one never runs; a running one's trainers are stopped cleanly."""
    sweep = _get_or_404(service, sweep_id)
    if isinstance(sweep, JSONResponse):
        return sweep
    if sweep.status == "cancelled":
        return JSONResponse(service.sweep_out(sweep), status_code=200)
    if sweep.status in DONE:
        return message(409, f"sweep {sweep_id!r} already ended ({sweep.status})")
    sweep = service.worker.cancel(sweep_id)
    return JSONResponse(service.sweep_out(sweep), status_code=202)

@router.get("/health", response_model=Health, responses=responses())
def health(service: Service = Depends(get_service)) -> Any:
    """Whether the worker and its Ray cluster are up, and how many sweeps have each status."""
    worker = service.worker
    status = "error" if worker.error else ("ok" if worker.ready.is_set() else "starting")
    ray = "starting" if not worker.ready.is_set() else "up"
    return JSONResponse({"status": status, "ray": ray, "error": worker.error, "sweeps": service.db.counts()})


def _body_problems(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, ValidationError):
        from orchestrator.spec import format_loc

        return [{"field": format_loc(tuple(e["loc"])) if e["loc"] else "(body)", "message": e["msg"]} for e in exc.errors()]
    return [{"field": "(body)", "message": "the body is not UTF-8 text"}]
