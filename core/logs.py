"""Structured logs: one line per record, JSON when ``MASTERLINE_LOG_FORMAT=json``.

Every record carries the ids of what it is about, taken from context: ``request_id``
(set per HTTP request by ``RequestIdMiddleware``), ``run_id`` and ``laptop`` (the serial;
set by the worker around a run's steps, ``bound(...)``). Secrets never reach the output:
values the vault decrypted in this process, API tokens, session keys and ``key=value``
pairs whose key names a secret are replaced by ``[redacted]`` before formatting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_run_id: ContextVar[int | None] = ContextVar("run_id", default=None)
_laptop: ContextVar[str | None] = ContextVar("laptop", default=None)

REDACTED = "[redacted]"
_SHAPES = re.compile(
    r"(mlt_|mls_)[A-Za-z0-9_\-]{8,}"  # API tokens, console session keys
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:(?<![a-z])(password|passwd|secret|private_key|preshared_key|psk|token|api_key)"
    r"[\"']?\s*[=:]\s*[\"']?)[^\s\"',;}]+",
    re.DOTALL,
)
_KNOWN_LIMIT = 4096
_known: OrderedDict[str, None] = OrderedDict()


def remember_secret(value: str) -> None:
    """A secret this process holds in clear (the vault calls it on every decrypt): from
    now on it is redacted from every log line. Bounded: the newest few thousand."""
    if len(value) < 6:
        return  # too short to tell from ordinary words; its shape rules still apply
    _known[value] = None
    _known.move_to_end(value)
    while len(_known) > _KNOWN_LIMIT:
        _known.popitem(last=False)


def redact(text: str) -> str:
    def keep_key(m: re.Match[str]) -> str:
        if m.group(2):  # key=value: keep the key, hide the value
            return m.group(0)[: m.end(2) - m.start(0)] + "=" + REDACTED
        return REDACTED

    out = _SHAPES.sub(keep_key, text)
    for value in list(_known):
        if value in out:
            out = out.replace(value, REDACTED)
    return out


@contextmanager
def bound(*, run_id: int | None = None, laptop: str | None = None) -> Iterator[None]:
    """Records logged inside carry these ids."""
    run_token = _run_id.set(run_id) if run_id is not None else None
    laptop_token = _laptop.set(laptop) if laptop is not None else None
    try:
        yield
    finally:
        if laptop_token is not None:
            _laptop.reset(laptop_token)
        if run_token is not None:
            _run_id.reset(run_token)


class ContextFilter(logging.Filter):
    """Adds the context's ids to each record and redacts its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        record.run_id = _run_id.get()
        record.laptop = _laptop.get()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: log what we have
            message = str(record.msg)
        record.msg, record.args = redact(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback text is formatted later; keep its type and a redacted message.
            error = record.exc_info[1]
            record.exc_text = redact(f"{type(error).__name__}: {error}")
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "run_id", "laptop"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_text:
            entry["error"] = record.exc_text
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{k}={getattr(record, k)}"
            for k in ("request_id", "run_id", "laptop")
            if getattr(record, k, None) is not None
        )
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} [{ids}]" if ids else line
        return f"{line}\n  {record.exc_text}" if record.exc_text else line


_HANDLER_NAME = "masterline"


def configure(*, level: int = logging.INFO, fmt: str | None = None) -> logging.Handler:
    """Send every ``masterline`` and uvicorn record to stderr, one line each (JSON when
    ``fmt`` or ``MASTERLINE_LOG_FORMAT`` is ``json``). Idempotent."""
    wanted = (fmt or os.environ.get("MASTERLINE_LOG_FORMAT", "text")).lower()
    root = logging.getLogger()
    for existing in root.handlers:
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if wanted == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our own access line (with the request id) replaces uvicorn's.
    logging.getLogger("uvicorn.access").disabled = True
    return handler


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
access_log = logging.getLogger("masterline.access")


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's ``X-Request-ID`` when sane), returns
    it in ``X-Request-ID``, and logs one access line with it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        started = time.monotonic()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %s",
                scope.get("method", ""),
                scope.get("path", ""),
                status,
                extra={
                    "method": scope.get("method", ""),
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(1000 * (time.monotonic() - started), 1),
                },
            )
            _request_id.reset(token)
