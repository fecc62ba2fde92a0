"""The service's dashboard pages and its sign-in form (HTML; not part of the API's schema)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from orchestrator.service import _dashboard
from orchestrator.service._api import get_service
from orchestrator.service._auth import COOKIE, bearer_ok, session_value
from orchestrator.service._state import Service

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


def _safe_next(target: str) -> str:
    """Return a local path to go to after signing in (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/dashboard"
