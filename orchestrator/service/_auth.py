"""The service's bearer token: created at first start in the state dir (mode 0600), checked on every request."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from orchestrator.errors import AblateError

TOKEN_FILE = "token"
COOKIE = "ablate_session"


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
