"""The CLI's side of the service: an HTTP client (httpx) whose errors are one-line `AblateError`s."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator.errors import AblateError

TOKEN_ENV = "ABLATE_TOKEN"
DEFAULT_STATE = Path("runs/service")


class ServiceError(AblateError):
    """The service refused a request or could not be reached; the message says which and why, in one line each."""


def resolve_token(token_file: Path | None) -> str:
    """Return the token: `$ABLATE_TOKEN`, else the first line of `token_file`, else the default state dir's token.

    Raises:
        ServiceError: If no token is found or the file cannot be read.
    """
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file if token_file is not None else DEFAULT_STATE / "token"
    if token_file is None and not path.is_file():
        raise ServiceError(f"no token: pass --token-file (the file `token` in the service's state folder) or set {TOKEN_ENV}")
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ServiceError(f"{path}: cannot read the token file ({exc.strerror})") from None
    if not token:
        raise ServiceError(f"{path}: the token file is empty")
    return token


class ServiceClient:
    """Talks to an `ablate serve` service.

    Args:
        url: The service's base URL, e.g. `http://127.0.0.1:8600`.
        token: The service's token.
        timeout_s: Per-request timeout.
        retries: How many times a request that failed in transit (or got 502/503/504) is sent again.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float = 120.0, retries: int = 3) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ServiceError(f"--server must be an http:// or https:// URL (got {url!r})")
        self._url = url.rstrip("/")
        self._retries = retries
        self._http = httpx.Client(base_url=self._url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, spec_text: str, base_text: str | None = None, *, key: str | None = None) -> dict[str, Any]:
        """Submit a spec (and its base config's text); retried safely under one idempotency key. Return the answer."""
        key = key or uuid.uuid4().hex
        return self._request("POST", "/sweeps", json={"spec": spec_text, "base": base_text}, headers={"Idempotency-Key": key})

    def sweeps(self) -> list[dict[str, Any]]:
        """Return every sweep."""
        return self._request("GET", "/sweeps")

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """Return one sweep."""
        return self._request("GET", f"/sweeps/{_quote(sweep_id)}")

    def trials(self, sweep_id: str) -> list[dict[str, Any]]:
        """Return a sweep's trials."""
        return self._request("GET", f"/sweeps/{_quote(sweep_id)}/trials")

    def cancel(self, sweep_id: str) -> dict[str, Any]:
        """Cancel a sweep; return it."""
        return self._request("POST", f"/sweeps/{_quote(sweep_id)}/cancel")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise ServiceError(f"cannot reach {self._url}: {exc or type(exc).__name__}") from None
                time.sleep(0.5 * 2**attempt)
                continue
            if response.status_code in (502, 503, 504) and attempt < self._retries:
                time.sleep(0.5 * 2**attempt)
                continue
            break
        if response.status_code < 400:
            return response.json()
        raise ServiceError(_error_text(self._url, response))


def _error_text(url: str, response: Any) -> str:
    if response.status_code == 401:
        return f"{url}: the token was refused (use --token-file or {TOKEN_ENV} with the service's token)"
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):
        return "\n".join(f"{d.get('field', '')}: {d.get('message', d.get('msg', ''))}" for d in detail if isinstance(d, dict))
    if isinstance(detail, str):
        return detail
    return f"{url}: HTTP {response.status_code}"


def _quote(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")
