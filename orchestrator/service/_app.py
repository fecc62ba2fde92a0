"""The service's FastAPI app: its API and dashboard routers, the token check, the OpenAPI schema, the lifespan.

Every request needs the service's token, as `Authorization: Bearer <token>`; the dashboard's pages (GET only) also
accept the session cookie that `POST /login` sets. Only `/login` is open. Blocking work (SQLite, validation, the
report) runs in FastAPI's thread pool. The routes live in `_api` (JSON) and `_pages` (HTML); the state they share
is `_state.Service`, reached through the `get_service` dependency.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from orchestrator.service import _api, _pages
from orchestrator.service._auth import OPEN_PATHS, Authenticate
from orchestrator.service._state import ReportError, Service

__all__ = ["ReportError", "Service", "create_app"]


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
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_middleware(Authenticate, token=service.token)
    app.include_router(_api.router)
    app.include_router(_pages.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(part) for part in e["loc"]), "message": str(e["msg"])} for e in exc.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """Return the app's OpenAPI schema: bearer security everywhere but `/login`, one shape for every 422."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        for path in OPEN_PATHS:
            for operation in schema["paths"].get(path, {}).values():
                operation["security"] = []
        # Every 422 has one shape: the field path and the message of each problem (see `_invalid_request`).
        problems = {"application/json": {"schema": {"$ref": "#/components/schemas/SpecProblems"}}}
        for operations in schema["paths"].values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {"description": "The request or the spec is invalid.", "content": problems}
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        app.openapi_schema = schema
    return app.openapi_schema
