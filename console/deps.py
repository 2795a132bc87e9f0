"""Who is looking at a page: the session cookie, CSRF, roles, language.

Every console route declares its roles with ``PageAllow(...)`` (``Viewer`` aliases
below); ``tests/console/test_access.py`` walks every route and fails on one that does
not. Unsafe methods (POST…) also need the session's CSRF token, in the ``X-CSRF-Token``
header (htmx sends it) or a ``csrf`` form field.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import EVERYONE, STAFF, TransactionalRoute, get_db
from api.errors import RoleNotAllowed
from console import i18n, service
from console.errors import CsrfRejected, SessionEnded
from console.service import Signed
from core.errors import MasterlineError, TooLarge, Unauthenticated
from core.principal import Principal, Role

SESSION_COOKIE = "ml_session"
LANGUAGE_COOKIE = "ml_lang"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONSOLE = "/console"


@dataclass(frozen=True)
class Viewer:
    """A signed-in person on a page."""

    principal: Principal
    session_id: int
    csrf_token: str
    language: str


def language_of(request: Request, signed: Signed | None = None) -> str:
    """The session's choice, else the switch's cookie, else the browser's languages."""
    if signed is not None and signed.language in i18n.LANGUAGES:
        return signed.language
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in i18n.LANGUAGES:
        return chosen
    return i18n.negotiate(request.headers.get("accept-language"))


def _resolve(request: Request, key: str) -> Signed:
    with get_db(request).session(write=False) as session:
        return service.resolve(session, key)


async def signed_in(request: Request) -> Signed | None:
    """The request's live session, or None (read once per request)."""
    if hasattr(request.state, "signed"):
        cached: Signed | None = request.state.signed
        return cached
    key = request.cookies.get(SESSION_COOKIE)
    signed: Signed | None = None
    if key and len(key) <= 128:
        try:
            signed = await anyio.to_thread.run_sync(_resolve, request, key)
        except SessionEnded:
            signed = None
    request.state.signed = signed
    return signed


async def check_csrf(request: Request, expected: str) -> None:
    """:raises CsrfRejected: no token, or not this session's."""
    sent = request.headers.get("x-csrf-token")
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf")
            sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()


class PageAllow:
    """Dependency that admits a signed-in person of one of ``roles`` (403 otherwise)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, request: Request) -> Viewer:
        signed = await signed_in(request)
        if signed is None:
            raise SessionEnded()
        if request.method not in SAFE_METHODS:
            await check_csrf(request, signed.csrf_token)
        if signed.principal.role not in self.roles:
            raise RoleNotAllowed(signed.principal.role.value, sorted(r.value for r in self.roles))
        return Viewer(
            signed.principal, signed.session_id, signed.csrf_token, language_of(request, signed)
        )


class Public:
    """Dependency that marks a route open to anyone (sign-in, language switch, so that
    the access walk knows it is meant to be)."""

    async def __call__(self) -> None:
        return None


SignedViewer = Annotated[Viewer, Depends(PageAllow(*Role))]
"""Anyone signed in, whatever the role (the account page)."""
AnyViewer = Annotated[Viewer, Depends(PageAllow(*EVERYONE))]
StaffViewer = Annotated[Viewer, Depends(PageAllow(*STAFF))]
AdminViewer = Annotated[Viewer, Depends(PageAllow(Role.ADMIN))]


async def cookie_principal(request: Request) -> Principal | None:
    """The API's second way in (``api.deps.get_principal``): a browser's session, for
    the routes the console's scripts call themselves (tus uploads). Unsafe methods need
    the CSRF header, as on pages.

    :raises CsrfRejected: an unsafe method without the session's CSRF token.
    """
    signed = await signed_in(request)
    if signed is None:
        return None
    if request.method not in SAFE_METHODS:
        await check_csrf(request, signed.csrf_token)
    return signed.principal


# Rendering errors as pages.
def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{CONSOLE}/sign-in?next={quote(target, safe='')}"


def error_response(request: Request, error: MasterlineError) -> Response:
    """A domain error on a page: a redirect to sign in, or the error in plain words
    (the whole page, or for htmx a message the page shows in place)."""
    from console.render import render

    if isinstance(error, Unauthenticated):
        if request.method == "GET" and not is_htmx(request):
            return RedirectResponse(sign_in_url(request), status_code=303)
        response: Response = HTMLResponse("", status_code=401)
        if is_htmx(request):
            response.headers["HX-Redirect"] = sign_in_url(request)
        return response
    from console.nav import visible_items

    signed: Signed | None = getattr(request.state, "signed", None)
    language = language_of(request, signed)
    template = "_error_fragment.html" if is_htmx(request) else "error.html"
    viewer = None
    if signed is not None:  # the page keeps its menu: the person is still signed in
        viewer = Viewer(signed.principal, signed.session_id, signed.csrf_token, language)
    body = render(
        template,
        {
            "error": error,
            "status": error.status_code,
            "request": request,
            "viewer": viewer,
            "nav": visible_items(viewer.principal) if viewer else [],
            "path": request.url.path,
        },
        language=language,
    )
    return HTMLResponse(body, status_code=error.status_code, headers={"Cache-Control": "no-store"})


class LengthRequired(MasterlineError):
    status_code = 411
    title = "Length required"


class _BadRequest(MasterlineError):
    status_code = 422
    title = "Invalid input"


class PageRoute(TransactionalRoute):
    """A console route: commits like every route, and renders domain errors as pages
    instead of problem+json."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except MasterlineError as e:
                return error_response(request, e)
            except RequestValidationError as e:
                first = e.errors()[0] if e.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return error_response(request, _BadRequest(f"{where}: {first.get('msg', '')}"))
            return response

        return page_handler


class BodyLimit:
    """Dependency refusing a request body over ``limit`` bytes before it is read (put
    it before the viewer: a form's CSRF field is read from the body)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def __call__(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise LengthRequired("send the file with a Content-Length (a plain form post)")
        if int(declared) > self.limit:
            raise TooLarge(f"{declared} bytes; the limit is {self.limit}")
