"""Jinja2 rendering: one environment, gettext bound to the language of the render."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from console import i18n, labels
from console.nav import visible_items

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC_VERSION = "4"  # bump when console.css / console.js change: browsers cache them

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True
)
_env.filters.update(
    datetime=i18n.fmt_datetime,
    time=i18n.fmt_time,
    duration=i18n.fmt_duration,
    number=i18n.fmt_number,
    bytes=i18n.fmt_bytes,
)
_env.globals.update(
    languages=i18n.LANGUAGES,
    language_names=i18n.LANGUAGE_NAMES,
    static_version=STATIC_VERSION,
    current_language=i18n.current,
    role_labels=labels.ROLES,
    state_labels=labels.STATES,
    step_labels=labels.STEPS,
    run_status_labels=labels.RUN_STATUSES,
    causes=labels.CAUSES,
    unknown_cause=labels.UNKNOWN_CAUSE,
    check_labels=labels.CHECKS,
    error_titles=labels.ERROR_TITLES,
    rec_labels=labels.RECONCILIATION,
    image_status_labels=labels.IMAGE_STATUSES,
    disk_health_labels=labels.DISK_HEALTH,
)


def environment() -> Environment:
    return _env


def render(template: str, context: Mapping[str, Any], *, language: str) -> str:
    """``template`` rendered with ``context`` in ``language``."""
    token = i18n.use(language)
    try:
        return _env.get_template(template).render(**context)
    finally:
        i18n.reset(token)


def fragment(template: str, context: Mapping[str, Any], *, language: str) -> Markup:
    return Markup(render(template, context, language=language))  # noqa: S704 (autoescaped)


def page(
    request: Request,
    template: str,
    *,
    viewer: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A whole page (or, for an htmx request, the same template: templates decide what
    to leave out with ``htmx``)."""
    language = viewer.language if viewer is not None else i18n.DEFAULT_LANGUAGE
    body = render(
        template,
        {
            "request": request,
            "viewer": viewer,
            "nav": visible_items(viewer.principal) if viewer is not None else [],
            "htmx": request.headers.get("hx-request") == "true",
            "path": request.url.path,
            **context,
        },
        language=language,
    )
    response = HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = language
    return response
