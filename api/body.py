"""Request bodies: read with a cap, never parsed when large on the event loop.

One reader for every body the API takes: the JSON bodies of ordinary routes (capped by
``MASTERLINE_MAX_JSON_BODY``, see ``api.deps.TransactionalRoute``), the raw files of the
CSV routes (each with its own cap) and, through ``images.upload``, image bytes (capped by
their declared size). The reader sees only headers and an async iterator of chunks, so
that what uses it does not depend on the web framework.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import InvalidInput, TooLarge

_DIGITS = re.compile(r"[0-9]{1,19}")
"""A header integer: ASCII digits only (``str.isdigit`` also accepts ``²`` and ``٣``),
at most 19 of them (the largest 64-bit signed integer has 19)."""

MAX_INT64 = 2**63 - 1


def header_int(headers: Mapping[str, str], name: str, *, required: bool = True) -> int | None:
    """A non-negative 64-bit integer header (``Content-Length``, ``Upload-Offset``…).

    :raises InvalidInput: missing (when required), not ASCII digits, or over 2^63-1.
    """
    raw = headers.get(name)
    if raw is None:
        if required:
            raise InvalidInput(f"{name} header missing")
        return None
    value = raw.strip()
    if not _DIGITS.fullmatch(value) or int(value) > MAX_INT64:
        raise InvalidInput(f"{name} header must be a non-negative integer below 2^63")
    return int(value)


def declared_length(headers: Mapping[str, str]) -> int | None:
    """``Content-Length`` if sent. :raises InvalidInput: malformed."""
    return header_int(headers, "content-length", required=False)


async def read_capped(
    chunks: AsyncIterable[bytes], *, limit: int, declared: int | None, what: str
) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes (before reading
    anything when ``Content-Length`` already says so): at most ``limit`` bytes are ever
    held.

    :raises TooLarge: over the limit (``what`` names the body in the message).
    """
    if declared is not None and declared > limit:
        raise TooLarge(f"{what} is {declared} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def raw_file_body(*, limit: int, what: str, hint: str) -> Callable[[Request], Awaitable[bytes]]:
    """A dependency that returns a route's raw file body (a CSV, not a form), capped.

    ``hint`` says how to send it right (``curl --data-binary @file.csv …``).
    """

    async def body(request: Request) -> bytes:
        """:raises TooLarge: over ``limit``. :raises InvalidInput: a form upload."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in _FORMS:
            # curl -d also strips newlines, which would turn the file into one line.
            raise InvalidInput(f"send the file as the raw request body ({hint}), not as a form")
        return await read_capped(
            request.stream(),
            limit=limit,
            declared=declared_length(request.headers),
            what=what,
        )

    return body


class CloseUnreadBody:
    """ASGI middleware: a response that starts before the request body was read to its
    end (a 401 or 413 sent without reading) carries ``Connection: close``.

    Otherwise the server keeps the connection for the next request and, to get there,
    reads and discards the rest of the body: 200 MiB refused with a 401 would still be
    received in full. Closing instead stops the transfer at what the kernel buffers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        ended = False

        async def receiving() -> Message:
            nonlocal ended
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                ended = True
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended:
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receiving, sending)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
