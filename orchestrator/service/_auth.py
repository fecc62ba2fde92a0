"""The service's bearer token: created at first start in the state dir (mode 0600), checked on every request
by the `Authenticate` middleware."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import cookie_parser

from orchestrator.errors import AblateError
from orchestrator.service import _dashboard

TOKEN_FILE = "token"
COOKIE = "ablate_session"
OPEN_PATHS = ("/login",)
"""The only paths a request without the token may reach."""


def load_or_create_token(state_dir: Path) -> str:
    """Return the token in `<state_dir>/token`, creating it (mode 0600, 256 random bits) if it does not exist.

    Raises:
        AblateError: If the token file is readable by others (its mode allows group or other access) or empty.
    """
    path = state_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise AblateError(f"{path}: the token file must be readable by its owner only (mode {mode:o}); chmod 600 it") from None
        token = path.read_text().strip()
        if not token:
            raise AblateError(f"{path}: the token file is empty; delete it to have a new token made")
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def session_value(token: str) -> str:
    """Return the dashboard's cookie value for `token` (derived from it, so the cookie is not the API token)."""
    return hmac.new(token.encode(), b"ablate-dashboard-session", hashlib.sha256).hexdigest()


def bearer_ok(header: str | None, token: str) -> bool:
    """Return True if an `Authorization` header carries `token` as a bearer token (constant-time comparison)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def cookie_ok(cookie: str | None, token: str) -> bool:
    """Return True if a dashboard session cookie was made from `token`."""
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())  # type: ignore[union-attr]


class Authenticate:
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
