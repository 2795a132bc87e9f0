"""The bench side's HTTP client: CLI commands that run on a bench PC talk to the API.

Problem responses become ``ApiError`` (a ``MasterlineError``), so the CLI prints the
server's one-line ``detail`` and exits non-zero; it never shows a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from core.errors import MasterlineError, Unauthenticated, Unavailable

_EXIT_BY_STATUS = {400: 2, 401: 6, 403: 6, 404: 4, 409: 5, 413: 2, 422: 2}


class ApiError(MasterlineError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail") or body.get("title") or f"HTTP {status}"))
        self.status_code = status
        self.exit_code = _EXIT_BY_STATUS.get(status, 1)
        self.body = body


class ApiClient:
    def __init__(
        self, base_url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        # The environment first: the settings (pydantic) cost a bench command a tenth of
        # a second to import, and say the same unless the variables are unset.
        base_url = base_url or os.environ.get("MASTERLINE_API_URL")
        token = token or os.environ.get("MASTERLINE_TOKEN")
        if not base_url or not token:
            from core.settings import get_settings

            settings = get_settings()
            base_url = base_url or settings.api_url
            token = token or (settings.token.get_secret_value() if settings.token else None)
        self.base_url = base_url.rstrip("/")
        secret = token
        if not secret:
            raise Unauthenticated("no API token: pass --token or set MASTERLINE_TOKEN")
        # A plain-HTTP API (the bench LAN, the demo) needs no TLS context: building
        # one (loading the CA bundle) was a third of a bench command's start-up. The
        # client follows no redirect, so an http:// URL never reaches TLS.
        plain = self.base_url.startswith("http://")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=timeout,
            verify=not plain,
            follow_redirects=False,
        )

    @property
    def http(self) -> httpx.Client:
        """The authenticated httpx client, for protocols that read status codes and
        headers themselves (tus uploads)."""
        return self._http

    def raw(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The response itself (binary bodies: labels, exports).

        :raises ApiError: the server answered an error. :raises Unavailable: no server.
        """
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise Unavailable(f"cannot reach {self.base_url}: {type(e).__name__}") from e
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:200]}
            raise ApiError(response.status_code, body if isinstance(body, dict) else {})
        return response

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """The decoded body (JSON, text or None).

        :raises ApiError: the server answered an error. :raises Unavailable: no server.
        """
        response = self.raw(method, path, **kw)
        if not response.content:
            return None
        ctype = response.headers.get("content-type", "")
        return response.json() if "json" in ctype else response.text

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
