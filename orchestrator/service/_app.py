"""The service's HTTP API and dashboard (FastAPI).

Every request needs the service's token, as `Authorization: Bearer <token>`; the dashboard's pages (GET only) also
accept the session cookie that `POST /login` sets. Only `/login` is open. Blocking work (SQLite, validation, the
report) runs in FastAPI's thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import cookie_parser

from orchestrator.service import _dashboard
from orchestrator.service._auth import COOKIE, bearer_ok, cookie_ok, load_or_create_token, session_value
from orchestrator.service._db import DONE, KeyConflict, ServiceDB, ServiceSweep
from orchestrator.service._submit import BASE_NAME, SubmissionError, check_submission, request_hash
from orchestrator.service._worker import RUN_DIR, SPEC_FILE, Worker, sweep_home

log = logging.getLogger("ablate.service")

MAX_BODY = 1_000_000
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
OPEN_PATHS = ("/login",)
TRIALS_MAX_AGE_S = 1.0
"""How stale a sweep's trial list may be when the API serves it (status polls share one reading of the store)."""


# ------------------------------------------------------------------------------------------------------ models


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


# ------------------------------------------------------------------------------------------------------ the app


class Service:
    """The state a running app shares: the queue, the worker, the token, the open sweep stores.

    Args:
        state_dir: The state folder (created if missing): `service.db`, `token`, `sweeps/<id>/`.
        root: The folder a spec's relative `trainer.base` is resolved against when its text is not sent.
        worker_options: Passed to `Worker` (max_running, address, cpus, gpus, poll_s, stop_grace_s).
    """

    def __init__(self, state_dir: Path, *, root: Path | None = None, **worker_options: Any) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir.absolute()
        self.root = (root or Path.cwd()).absolute()
        self.token = load_or_create_token(self.state_dir)
        self.db = ServiceDB(self.state_dir / "service.db")
        self.worker = Worker(self.db, self.state_dir, **worker_options)
        self._stores: dict[str, Any] = {}
        self._stores_lock = threading.Lock()
        self._report_locks: dict[str, threading.Lock] = {}
        self._trials: dict[str, tuple[float, tuple[Any, ...], list[dict[str, Any]]]] = {}

    # ---- sweep stores ----------------------------------------------------------------------------------------

    def store(self, sweep_id: str) -> Any:
        """Return the (shared, thread-safe) engine store of a sweep, opened once."""
        from orchestrator.engine import DB_NAME
        from orchestrator.store import SQLiteStore

        with self._stores_lock:
            store = self._stores.get(sweep_id)
            if store is None:
                store = SQLiteStore(sweep_home(self.state_dir, sweep_id) / RUN_DIR / DB_NAME)
                self._stores[sweep_id] = store
            return store

    def close(self) -> None:
        """Close the open sweep stores."""
        with self._stores_lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()

    # ---- views -----------------------------------------------------------------------------------------------

    def sweep_out(self, sweep: ServiceSweep) -> dict[str, Any]:
        """Return a sweep as the API shows it."""
        try:
            counts = self.store(sweep.id).summary(sweep.name)
        except Exception:  # a sweep whose store cannot be read still shows its queue state
            counts = {}
        return {
            "id": sweep.id,
            "name": sweep.name,
            "status": sweep.status,
            "n_trials": sweep.n_trials,
            "trials": {k: int(v) for k, v in counts.items()},
            "submitted": sweep.submitted,
            "started": sweep.started,
            "finished": sweep.finished,
            "runs": sweep.runs,
            "cancel_requested": bool(sweep.cancel_requested),
            "error": sweep.error,
        }

    def trials_out(self, sweep: ServiceSweep, *, max_age_s: float = TRIALS_MAX_AGE_S) -> list[dict[str, Any]]:
        """Return a sweep's trials as the API shows them, at most `max_age_s` old.

        Reading and decoding every trial's record costs about 0.1 ms per trial; status polls (many clients, one
        sweep) share one reading per `max_age_s`.
        """
        from orchestrator.engine import trial_rows
        from orchestrator.errors import StoreError

        cached = self._trials.get(sweep.id)
        now = time.monotonic()
        # A change in the queue (the sweep started, ended, was cancelled) is never served stale.
        key = (sweep.status, sweep.runs, sweep.finished)
        if cached is not None and cached[1] == key and now - cached[0] < max_age_s:
            return cached[2]
        try:
            rows = trial_rows(self.store(sweep.id), sweep.name)
        except StoreError as exc:  # its folder was removed by hand: the queue still knows the sweep
            log.warning("sweep %s: %s", sweep.id, exc)
            return []
        out = [_finite({**row, "id": f"{sweep.id}:{row['id']}", "trial_id": row["id"], "sweep_id": sweep.id}) for row in rows]
        self._trials[sweep.id] = (now, key, out)
        return out

    def objective(self, sweep: ServiceSweep, trial_ids: list[str]) -> str | None:
        """Return the metric a sweep is judged by: the spec's, or (auto) the first validation metric logged."""
        import yaml

        from orchestrator.history import default_objective

        metric = ((yaml.safe_load(sweep.spec) or {}).get("objective") or {}).get("metric", "auto")
        if metric != "auto":
            return str(metric)
        store = self.store(sweep.id)
        for trial_id in trial_ids:
            keys = {k for point in store.get_history(trial_id) for k in point.metrics}
            if keys:
                return default_objective(keys)
        return None

    # ---- submit ----------------------------------------------------------------------------------------------

    def submit(self, submission: Submission, key: str | None) -> tuple[ServiceSweep, bool, list[str]]:
        """Validate a submission and queue it (once per idempotency key); return the sweep, whether new, warnings.

        Raises:
            SubmissionError: If the spec is invalid (nothing is queued).
            KeyConflict: If the key was used before with a different submission.
        """
        digest = request_hash(submission.spec, submission.base)
        if key is not None:
            known = self.db.find_key(key)
            if known is not None:
                if known.request_hash != digest:
                    raise KeyConflict(key)
                return known, False, []
        resources = self.worker.resources
        checked = check_submission(
            submission.spec, submission.base, root=self.root, cpus=resources.get("CPU"), gpus=resources.get("GPU")
        )

        def prepare(sweep_id: str) -> None:
            from orchestrator.engine import prepare_sweep
            from orchestrator.spec import load_spec

            home = sweep_home(self.state_dir, sweep_id)
            home.mkdir(parents=True, exist_ok=True)
            base_path = None
            if checked.base_text is not None:
                base_path = home / BASE_NAME
                base_path.write_text(checked.base_text)
            (home / SPEC_FILE).write_text(checked.run_text(base_path))
            store, _ = prepare_sweep(load_spec(home / SPEC_FILE), (home / SPEC_FILE).read_text(), home / RUN_DIR)
            store.close()

        # A search's trials are sampled as it runs (the design holds the configuration it varies): count the samples.
        search = checked.spec.search
        n_trials = search.num_samples if search is not None else len(checked.trials)
        sweep, new = self.db.create_sweep(
            checked.spec.name, checked.submitted_text, n_trials, idempotency_key=key, request_hash=digest, prepare=prepare
        )
        if new:
            self.worker.wake()
        return sweep, new, checked.warnings

    # ---- report ----------------------------------------------------------------------------------------------

    def report(self, sweep: ServiceSweep) -> Path:
        """Return the sweep's HTML report, written by `ablate report` (again only when the store changed since).

        Raises:
            ReportError: If the report cannot be made (yet), with `ablate report`'s error.
        """
        from orchestrator.engine import DB_NAME

        run_dir = sweep_home(self.state_dir, sweep.id) / RUN_DIR
        out = run_dir / "report"
        html = out / "report.html"
        lock = self._report_locks.setdefault(sweep.id, threading.Lock())
        with lock:
            changed = max((p.stat().st_mtime for p in run_dir.glob(f"{DB_NAME}*")), default=0.0)
            if html.is_file() and html.stat().st_mtime >= changed and sweep.status in DONE:
                return html
            argv = [sys.executable, "-c", "from orchestrator.cli import main; main()", "-q", "report", str(run_dir), "--out", str(out)]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            if result.returncode != 0 or not html.is_file():
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                raise ReportError(lines[-1].removeprefix("error: ") if lines else f"`ablate report` exited with {result.returncode}")
            return html


class ReportError(Exception):
    """A sweep's report cannot be made (yet); the message says why."""


def _finite(value: Any) -> Any:
    """Return `value` with NaN and inf replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class _Authenticate:
    """ASGI middleware: every request needs the token (bearer header; GET pages also the session cookie).

    Only `OPEN_PATHS` are open. A pure ASGI middleware, not `BaseHTTPMiddleware`: it adds nothing to the cost of a
    request that passes.
    """

    def __init__(self, app: Any, token: str) -> None:
        self._app = app
        self._token = token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in (b"authorization", b"cookie")}
        if bearer_ok(headers.get("authorization"), self._token):
            await self._app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
            if cookie_ok(cookie, self._token):
                await self._app(scope, receive, send)
                return
        path = scope["path"]
        response: Response
        if path == "/" or path.startswith("/dashboard"):
            response = HTMLResponse(_dashboard.unauthorized_page(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = JSONResponse({"detail": "missing or wrong token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _message(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    docs = {
        401: "Missing or wrong token.",
        404: "No such sweep or trial.",
        409: "Conflicts with the sweep's state or an earlier request.",
        413: "The request body is too large.",
        415: "The body is neither JSON nor YAML.",
        422: "The request or the spec is invalid.",
    }
    return {code: {"model": SpecProblems if code == 422 else Message, "description": docs[code]} for code in (401, *codes)}


def create_app(service: Service) -> FastAPI:
    """Return the FastAPI app of a service (the worker starts and stops with the app's lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.worker.stop)
            service.close()

    app = FastAPI(
        title="ablate",
        summary="Submit ablation sweeps (verl GRPO or the miniature trainer), follow their trials, cancel them, read their reports.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(part) for part in e["loc"]), "message": str(e["msg"])} for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    app.add_middleware(_Authenticate, token=service.token)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            for path in OPEN_PATHS:
                for operation in schema["paths"].get(path, {}).values():
                    operation["security"] = []
            # Every 422 has one shape: the field path and the message of each problem (see `invalid_request`).
            problems = {"application/json": {"schema": {"$ref": "#/components/schemas/SpecProblems"}}}
            for operations in schema["paths"].values():
                for operation in operations.values():
                    if "422" in operation.get("responses", {}):
                        operation["responses"]["422"] = {"description": "The request or the spec is invalid.", "content": problems}
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def get_or_404(sweep_id: str) -> ServiceSweep | JSONResponse:
        try:
            return service.db.get_sweep(sweep_id)
        except KeyError:
            return _message(404, f"no sweep {sweep_id!r}")

    # ---- API -------------------------------------------------------------------------------------------------

    @app.post(
        "/sweeps",
        status_code=201,
        response_model=Submitted,
        responses={200: {"model": Submitted, "description": "Already submitted with this Idempotency-Key."}, **_responses(409, 413, 415, 422)},
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
    ) -> Any:
        """Validate a spec exactly as `ablate plan` does and queue its sweep; 422 (nothing queued) on a bad spec."""
        body = await request.body()
        if len(body) > MAX_BODY:
            return _message(413, f"the request body is larger than {MAX_BODY} bytes")
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        try:
            if media in YAML_TYPES:
                submission = Submission(spec=body.decode())
            elif media == "application/json" or media.endswith("+json"):
                submission = Submission.model_validate_json(body)
            else:
                return _message(415, f"send the spec as application/json or application/yaml (got {media})")
        except (ValidationError, UnicodeDecodeError) as exc:
            problems = _body_problems(exc)
            return JSONResponse({"detail": problems}, status_code=422)
        try:
            sweep, new, warnings = await run_in_threadpool(service.submit, submission, idempotency_key)
        except SubmissionError as exc:
            return JSONResponse({"detail": [{"field": f, "message": m} for f, m in exc.problems]}, status_code=422)
        except KeyConflict:
            return _message(409, "this Idempotency-Key was used with a different request")
        payload = await run_in_threadpool(lambda: {"sweep": service.sweep_out(sweep), "trials": service.trials_out(sweep), "warnings": warnings})
        return JSONResponse(payload, status_code=201 if new else 200)

    @app.get("/sweeps", response_model=list[SweepOut], responses=_responses())
    def list_sweeps(status: Literal["queued", "running", "completed", "failed", "cancelled"] | None = None) -> Any:
        """Every sweep, oldest first (or those with `status`)."""
        return JSONResponse([service.sweep_out(s) for s in service.db.list_sweeps(status=status)])

    @app.get("/sweeps/{sweep_id}", response_model=SweepDetail, responses=_responses(404))
    def get_sweep(sweep_id: str) -> Any:
        """One sweep: its status, its trials' counts by status, and its spec."""
        sweep = get_or_404(sweep_id)
        if isinstance(sweep, JSONResponse):
            return sweep
        return JSONResponse({**service.sweep_out(sweep), "spec": sweep.spec})

    @app.get("/sweeps/{sweep_id}/trials", response_model=list[TrialOut], responses=_responses(404))
    def get_trials(sweep_id: str) -> Any:
        """A sweep's trials: status, step, best score and step, collapse onset, stop reason and why."""
        sweep = get_or_404(sweep_id)
        if isinstance(sweep, JSONResponse):
            return sweep
        return JSONResponse(service.trials_out(sweep))

    @app.get("/trials/{trial_id}/metrics", response_model=Metrics, responses=_responses(404))
    def get_metrics(
        trial_id: str,
        keys: list[str] | None = Query(None, description="Metric names (repeat the parameter, or separate with commas); default: all."),
        since: int | None = Query(None, ge=0, description="Only the steps after this one."),
    ) -> Any:
        """A trial's metrics by step (`<sweep id>:<trial id>`), optionally some keys only and only after a step."""
        sweep_id, sep, inner = trial_id.rpartition(":")
        if not sep:
            return _message(404, f"no trial {trial_id!r} (trial ids are <sweep id>:<trial id>)")
        sweep = get_or_404(sweep_id)
        if isinstance(sweep, JSONResponse):
            return _message(404, f"no trial {trial_id!r}")
        wanted = [k for item in keys or [] for k in item.split(",") if k] or None
        try:
            history = service.store(sweep.id).get_history(inner, keys=wanted)
        except KeyError:
            return _message(404, f"no trial {trial_id!r}")
        points = [{"step": p.step, "metrics": _finite(dict(p.metrics))} for p in history if since is None or p.step > since]
        return JSONResponse({"trial": trial_id, "points": points})

    @app.get(
        "/sweeps/{sweep_id}/report",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}, "description": "The HTML report (self-contained)."}, **_responses(404, 409)},
    )
    def get_report(sweep_id: str) -> Any:
        """The sweep's ablation report as self-contained HTML (the same as `ablate report` writes)."""
        sweep = get_or_404(sweep_id)
        if isinstance(sweep, JSONResponse):
            return sweep
        try:
            html = service.report(sweep)
        except ReportError as exc:
            return _message(409, f"no report for sweep {sweep_id!r} yet: {exc}")
        return HTMLResponse(html.read_text())

    @app.post("/sweeps/{sweep_id}/cancel", response_model=SweepOut, status_code=202, responses={200: {"model": SweepOut, "description": "Already cancelled."}, **_responses(404, 409)})
    def cancel_sweep(sweep_id: str) -> Any:
        """Cancel a sweep: a queued one never runs; a running one's trainers are stopped cleanly."""
        sweep = get_or_404(sweep_id)
        if isinstance(sweep, JSONResponse):
            return sweep
        if sweep.status == "cancelled":
            return JSONResponse(service.sweep_out(sweep), status_code=200)
        if sweep.status in DONE:
            return _message(409, f"sweep {sweep_id!r} already ended ({sweep.status})")
        sweep = service.worker.cancel(sweep_id)
        return JSONResponse(service.sweep_out(sweep), status_code=202)

    @app.get("/health", response_model=Health, responses=_responses())
    def health() -> Any:
        """Whether the worker and its Ray cluster are up, and how many sweeps have each status."""
        worker = service.worker
        status = "error" if worker.error else ("ok" if worker.ready.is_set() else "starting")
        ray = "starting" if not worker.ready.is_set() else "up"
        return JSONResponse({"status": status, "ray": ray, "error": worker.error, "sweeps": service.db.counts()})

    # ---- dashboard -------------------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(next: str = "/dashboard") -> Any:
        return HTMLResponse(_dashboard.login_page(_safe_next(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        target = _safe_next((form.get("next") or ["/dashboard"])[0])
        if not bearer_ok(f"Bearer {token}", service.token):
            return HTMLResponse(_dashboard.login_page(target, failed=True), status_code=401)
        response = RedirectResponse(target, status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, session_value(service.token), httponly=True, samesite="strict", secure=secure, path="/")
        return response

    @app.get("/", include_in_schema=False)
    def root() -> Any:
        return RedirectResponse("/dashboard", status_code=307)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> Any:
        return HTMLResponse(_dashboard.sweeps_page([service.sweep_out(s) for s in service.db.list_sweeps()]))

    @app.get("/dashboard/sweeps/{sweep_id}", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_sweep(sweep_id: str) -> Any:
        try:
            sweep = service.db.get_sweep(sweep_id)
        except KeyError:
            return HTMLResponse(_dashboard.page("ablate: not found", f"<h1>No sweep {sweep_id!r}</h1>"), status_code=404)
        trials = service.trials_out(sweep)
        objective = service.objective(sweep, [t["trial_id"] for t in trials])
        curves: dict[str, list[tuple[int, float]]] = {}
        if objective is not None:
            store = service.store(sweep.id)
            for t in trials:
                points = store.get_history(t["trial_id"], keys=[objective])
                curves[t["id"]] = [(p.step, float(p.metrics[objective])) for p in points if objective in p.metrics]
        return HTMLResponse(_dashboard.sweep_page(service.sweep_out(sweep), trials, curves, objective))

    return app


def _safe_next(target: str) -> str:
    """Return a local path to go to after signing in (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/dashboard"


def _body_problems(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, ValidationError):
        from orchestrator.spec import format_loc

        return [{"field": format_loc(tuple(e["loc"])) if e["loc"] else "(body)", "message": e["msg"]} for e in exc.errors()]
    return [{"field": "(body)", "message": "the body is not UTF-8 text"}]

