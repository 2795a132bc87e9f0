"""Sign in (an API token exchanged for a session), sign out, language switch."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

import anyio
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.errors import BadToken
from console import i18n, render, service
from console.deps import (
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    Public,
    SignedViewer,
    check_csrf,
    language_of,
    signed_in,
)
from console.nav import home_of
from console.pages._kit import get_db, page_router
from core.errors import Forbidden
from core.settings import get_settings

router = page_router()
SIGNIN_COOKIE = "ml_signin"
"""Double-submit cookie of the sign-in form (no session yet to hold a CSRF token)."""
Open = Depends(Public())


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or get_settings().console_secure_cookies


def _safe_next(target: str | None) -> str:
    # Only a path of this console: never an open redirect to another site.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/"


def _sign_in_page(
    request: Request, *, next_: str, error: str | None = None, status: int = 200
) -> Response:
    nonce = secrets.token_urlsafe(24)
    body = render.render(
        "sign_in.html",
        {
            "request": request,
            "viewer": None,
            "nav": [],
            "next": next_,
            "nonce": nonce,
            "error": error,
        },
        language=language_of(request),
    )
    response = HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/console/sign-in",
    )
    return response


@router.get("/console/sign-in", dependencies=[Open])
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _sign_in_page(request, next_=_safe_next(next))


@router.post("/console/sign-in", dependencies=[Open])
def sign_in(
    request: Request,
    token: Annotated[str, Form(max_length=200)],
    nonce: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=2000)] = "/console/",
) -> Response:
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not secrets.compare_digest(nonce.encode(), expected.encode()):
        raise Forbidden("the sign-in form expired: reload the page and try again")
    settings = get_settings()
    lifetime = timedelta(hours=settings.console_session_hours)
    language = language_of(request)
    try:
        with get_db(request).session() as session:
            opened = service.open_session(session, token, lifetime=lifetime, language=language)
            principal = service.resolve(session, opened.key).principal
    except BadToken:
        return _sign_in_page(
            request,
            next_=_safe_next(next),
            error=i18n.N_("Unknown or revoked token."),
            status=401,
        )
    target = _safe_next(next)
    if target == "/console/":
        target = home_of(principal)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.key,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/console/sign-in")
    return response


@router.post("/console/sign-out")
def sign_out(request: Request, viewer: SignedViewer) -> Response:
    key = request.cookies.get(SESSION_COOKIE, "")
    with get_db(request).session() as session:
        service.close_session(session, key)
    response: Response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    if request.headers.get("hx-request") == "true":
        response = HTMLResponse("", headers={"HX-Redirect": "/console/sign-in"})
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/console/language", dependencies=[Open])
async def switch_language(
    request: Request,
    language: Annotated[str, Form(max_length=8)],
    next: Annotated[str, Form(max_length=2000)] = "/console/",
) -> Response:
    """The language switch: remembered in the session (and a cookie, for the sign-in
    page). Signed in, it needs the session's CSRF token like any form."""
    chosen = language if language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    signed = await signed_in(request)
    if signed is not None:
        await check_csrf(request, signed.csrf_token)

        def remember() -> None:
            with get_db(request).session() as session:
                service.set_language(session, signed.session_id, chosen)

        await anyio.to_thread.run_sync(remember)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="lax", secure=_secure(request)
    )
    return response


@router.get("/console/")
def home(viewer: SignedViewer) -> Response:
    return RedirectResponse(home_of(viewer.principal), status_code=303)


@router.get("/console/account")
def account(request: Request, viewer: SignedViewer) -> Response:
    """Who is signed in, with which role; the only page of a role without pages."""
    return render.page(request, "account.html", viewer=viewer)
