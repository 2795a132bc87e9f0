"""The bench side's HTTP client: CLI commands that run on a bench PC talk to the API.

Problem responses become ``ApiError`` (a ``MasterlineError``), so the CLI prints the
server's one-line ``detail`` and exits non-zero; it never shows a traceback.

A 503 with ``Retry-After`` is the server saying "busy, nothing was done, ask again":
SQLite's write lock did not come round within the busy timeout (``core.db.FairLock``,
``DatabaseBusy``), a moment during a large import on a loaded machine. Every command
retries it here, a bounded number of times (``MASTERLINE_API_RETRIES``), waiting what
the server asks (capped), one line on stderr per wait; then gives up with
``ServerBusy``. Only requests whose body can be sent again are retried (not a stream).
"""

from __future__ import annotations

import email.utils
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from core.errors import InvalidInput, MasterlineError, Unauthenticated, Unavailable

_EXIT_BY_STATUS = {400: 2, 401: 6, 403: 6, 404: 4, 409: 5, 413: 2, 422: 2, 503: 7}

BUSY_RETRIES = 3
"""Retries of a busy answer (503 + Retry-After) by default: each busy answer already
took the server's busy timeout (10 s) to give, so a few retries ride out a busy spell
without leaving a technician waiting minutes on a server in real trouble."""
MAX_RETRY_WAIT = 10.0
"""The longest wait between two tries, whatever ``Retry-After`` says (seconds)."""
_RETRIES_ENV = "MASTERLINE_API_RETRIES"


class ApiError(MasterlineError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail") or body.get("title") or f"HTTP {status}"))
        self.status_code = status
        self.exit_code = _EXIT_BY_STATUS.get(status, 1)
        self.body = body


class ServerBusy(ApiError):
    """The server still answered busy (503 + Retry-After) after the retries: nothing was
    done by the request (the server rolled it back); run the command again later."""

    def __init__(self, status: int, body: dict[str, Any], *, retries: int) -> None:
        super().__init__(status, body)
        self.message = f"{self.message} (still busy after {retries} retries; nothing was done)"
        self.args = (self.message,)


def retry_after(response: httpx.Response) -> float | None:
    """The wait a 503's ``Retry-After`` asks for, capped at ``MAX_RETRY_WAIT``, or None
    when it asks for none (a 503 without it is not the "ask again" kind)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_WAIT)


def _retries_from_env() -> int:
    raw = os.environ.get(_RETRIES_ENV, "").strip()
    if not raw:
        return BUSY_RETRIES
    if not raw.isdigit() or int(raw) > 100:
        raise InvalidInput(f"{_RETRIES_ENV} must be a whole number from 0 to 100, not {raw!r}")
    return int(raw)


def _say_on_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _resendable(kw: dict[str, Any]) -> bool:
    """Whether the request's body can be sent a second time: a stream (an iterator, a
    file) is consumed by the first try."""
    content = kw.get("content")
    return "files" not in kw and (content is None or isinstance(content, bytes | str))


class ApiClient:
    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        busy_retries: int | None = None,
        on_wait: Callable[[str], None] = _say_on_stderr,
    ) -> None:
        """``busy_retries``: how many times a busy answer is retried (default
        ``MASTERLINE_API_RETRIES``, else ``BUSY_RETRIES``); ``on_wait`` is told one line
        before each wait.

        :raises Unauthenticated: no token given or configured.
        :raises InvalidInput: ``MASTERLINE_API_RETRIES`` is not a number from 0 to 100.
        """
        self.busy_retries = _retries_from_env() if busy_retries is None else busy_retries
        self._on_wait = on_wait
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
        :raises ServerBusy: still busy after ``busy_retries`` retries.
        """
        retries = 0
        while True:
            try:
                response = self._http.request(method, path, **kw)
            except httpx.HTTPError as e:
                raise Unavailable(f"cannot reach {self.base_url}: {type(e).__name__}") from e
            if response.status_code < 400:
                return response
            body = _problem_body(response)
            wait = retry_after(response) if response.status_code == 503 else None
            if wait is None or not _resendable(kw):
                raise ApiError(response.status_code, body)
            if retries >= self.busy_retries:
                raise ServerBusy(response.status_code, body, retries=retries)
            retries += 1
            self._on_wait(
                f"server busy ({body.get('detail') or 'HTTP 503'}): waiting {wait:g} s, "
                f"then retry {retries} of {self.busy_retries}"
            )
            time.sleep(wait)

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


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200]}
    return body if isinstance(body, dict) else {}
