"""The service's dashboard pages and its sign-in form (HTML; not part of the API's schema)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from orchestrator.service import _dashboard
from orchestrator.service._api import get_service
from orchestrator.service._auth import COOKIE, bearer_ok, session_value
from orchestrator.service._state import ReportError, Service

router = APIRouter()


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(next: str = "/dashboard") -> Any:
    return HTMLResponse(_dashboard.login_page(_safe_next(next)))

@router.post("/login", include_in_schema=False)
async def login(request: Request, service: Service = Depends(get_service)) -> Any:
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0]
    target = _safe_next((form.get("next") or ["/dashboard"])[0])
    if not bearer_ok(f"Bearer {token}", service.token):
        return HTMLResponse(_dashboard.login_page(target, failed=True), status_code=401)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, session_value(service.token), httponly=True, samesite="strict", secure=secure, path="/")
    return response

@router.get("/", include_in_schema=False)
def root() -> Any:
    return RedirectResponse("/dashboard", status_code=307)

@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(service: Service = Depends(get_service)) -> Any:
    return HTMLResponse(_dashboard.sweeps_page([service.sweep_out(s) for s in service.db.list_sweeps()]))

@router.get("/dashboard/sweeps/{sweep_id}", response_class=HTMLResponse, include_in_schema=False)
def dashboard_sweep(sweep_id: str, service: Service = Depends(get_service)) -> Any:
    from orchestrator.report import config_colours, config_label
    from orchestrator.service._live import effects_html

    try:
        sweep = service.db.get_sweep(sweep_id)
    except KeyError:
        return _not_found(f"No sweep {sweep_id!r}")
    trials = service.trials_out(sweep)
    objective = service.objective(sweep, [t["trial_id"] for t in trials])
    curves: dict[str, list[tuple[int, float]]] = {}
    if objective is not None:
        store = service.store(sweep.id)
        for t in trials:
            points = store.get_history(t["trial_id"], keys=[objective])
            curves[t["id"]] = [(p.step, float(p.metrics[objective])) for p in points if objective in p.metrics]
    colours = config_colours(config_label(t["levels"] or {}) for t in trials if not t["parent"])
    live, error = None, None
    try:
        live = service.effects(sweep, trials)
    except ReportError as exc:
        error = str(exc)
    effects = effects_html(live, colours, error=error)
    baseline = dict(live.baseline) if live is not None else None
    page = _dashboard.sweep_page(service.sweep_out(sweep), trials, curves, objective, effects=effects, baseline_levels=baseline)
    return HTMLResponse(page)

@router.get("/dashboard/trials/{trial_id}", response_class=HTMLResponse, include_in_schema=False)
def dashboard_trial(trial_id: str, service: Service = Depends(get_service)) -> Any:
    """One trial: its objective and training signals (entropy, response length, grad norm), and the rule's evidence."""
    from orchestrator.report import SIGNALS, config_colours, config_label

    sweep_id, _, inner = trial_id.rpartition(":")
    try:
        sweep = service.db.get_sweep(sweep_id)
    except KeyError:
        return _not_found(f"No trial {trial_id!r}")
    trials = service.trials_out(sweep)
    trial = next((t for t in trials if t["trial_id"] == inner), None)
    if trial is None:
        return _not_found(f"No trial {trial_id!r}")
    store = service.store(sweep.id)
    history = store.get_history(inner)
    objective = service.objective(sweep, [inner])
    wanted = [(objective, objective)] if objective else []
    for name, title in (("entropy", "entropy"), ("response_length", "response length (mean)"), ("grad_norm", "grad norm")):
        key = next((k for k in SIGNALS[name] if any(k in p.metrics for p in history)), SIGNALS[name][0])
        wanted.append((key, f"{title}: {key}"))
    signals = [(key, title, [(p.step, float(p.metrics[key])) for p in history if key in p.metrics]) for key, title in wanted]
    record = store.get_trial(inner)
    evidence = dict(record.stop_evidence) if record.stop_evidence else None
    colours = config_colours(config_label(t["levels"] or {}) for t in trials if not t["parent"])
    colour = colours.get(config_label(trial["levels"] or {}), "#555555")
    return HTMLResponse(_dashboard.trial_page(service.sweep_out(sweep), trial, signals, evidence, colour))


def _not_found(title: str) -> HTMLResponse:
    return HTMLResponse(_dashboard.page("ablate: not found", f"<h1>{escape(title)}</h1>"), status_code=404)


def _safe_next(target: str) -> str:
    """Return a local path to go to after signing in (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/dashboard"
