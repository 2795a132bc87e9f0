"""Languages: French first, English too, through gettext catalogues compiled by Babel.

Messages are written in English in the source (``_("…")`` in templates, ``N_("…")`` for
Python constants translated when rendered) and translated from
``console/locale/<lang>/LC_MESSAGES/messages.mo``. ``make messages`` extracts, updates
and compiles; ``tests/console/test_i18n.py`` fails on any message without a French
translation and on a compiled catalogue older than its ``.po``.
"""

from __future__ import annotations

import gettext as _gettext
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES: tuple[str, ...] = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}
TIMEZONE = ZoneInfo("Europe/Paris")

_current: ContextVar[str] = ContextVar("console_language", default=DEFAULT_LANGUAGE)


def N_(message: str) -> str:
    """Mark a Python constant for extraction; it is translated where it is rendered."""
    return message


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> _gettext.NullTranslations:
    if language == "en":
        return _gettext.NullTranslations()  # the source language
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.mo"
    with path.open("rb") as f:
        return _gettext.GNUTranslations(f)


def current() -> str:
    return _current.get()


def use(language: str) -> object:
    """Make ``language`` current for this context; returns a token for ``reset``."""
    return _current.set(language if language in LANGUAGES else DEFAULT_LANGUAGE)


def reset(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an ``Accept-Language`` header; French when the
    browser names none of them."""
    wanted: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            wanted.append((-quality, i, primary))
    return sorted(wanted)[0][2] if wanted else DEFAULT_LANGUAGE


# Formatting in the current language. Hot paths (a board renders hundreds of numbers)
# format by hand; Babel's formatters parse their patterns on every call.
@lru_cache(maxsize=len(LANGUAGES))
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def fmt_datetime(value: datetime | None, style: str = "short") -> str:
    if value is None:
        return "—"
    return format_datetime(value.astimezone(TIMEZONE), style, locale=_locale(current()))


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(TIMEZONE).strftime("%H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``2 h 05``: the same in both languages."""
    if seconds is None:
        return "—"
    secs = max(1, round(seconds))
    if secs < 90:
        return f"{secs} s"
    if secs < 90 * 60:
        return f"{round(secs / 60)} min"
    return f"{secs // 3600} h {secs % 3600 // 60:02d}"


def fmt_number(value: float | int, digits: int = 0) -> str:
    text = f"{value:,.{digits}f}"
    if current() == "fr":  # 12 345,6 (narrow no-break space, decimal comma)
        return text.replace(",", "\u202f").replace(".", ",")
    return text


def fmt_bytes(value: float | int | None) -> str:
    if value is None:
        return "—"
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{fmt_number(n, 0 if unit == 'B' else 1)} {unit}"
        n /= 1024
    return str(value)  # pragma: no cover
