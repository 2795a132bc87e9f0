"""French first: every message of the console has a French translation, the compiled
catalogue is the one its .po describes, and pages speak the reader's language."""

from __future__ import annotations

import gettext
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from console import i18n
from core.principal import Role
from tests.console.support import sign_in
from tests.support.factories import World

CONSOLE = Path(i18n.__file__).resolve().parent
PO = CONSOLE / "locale" / "fr" / "LC_MESSAGES" / "messages.po"
MO = CONSOLE / "locale" / "fr" / "LC_MESSAGES" / "messages.mo"


def _source_messages() -> set[str | tuple[str, str]]:
    """Every message the templates and the Python code ask for (as ``make messages``
    extracts them)."""
    with (CONSOLE / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(CONSOLE), method_map, options_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def test_every_message_has_a_french_translation() -> None:
    catalogue = read_po(PO.open("rb"), locale="fr")
    translated = {
        (m.id if isinstance(m.id, str) else tuple(m.id[:2])): m
        for m in catalogue
        if m.id and not m.fuzzy
    }
    missing = []
    for message in sorted(_source_messages(), key=str):
        entry = translated.get(message)
        strings = (
            (entry.string if isinstance(entry.string, tuple) else (entry.string,)) if entry else ()
        )
        if not entry or not all(strings):
            missing.append(repr(message))
    assert len(_source_messages()) > 300  # the extraction itself works
    assert not missing, (
        "messages without a French translation (run `make messages` and "
        "translate them in " + str(PO) + "):\n  " + "\n  ".join(missing)
    )


def test_the_compiled_catalogue_is_the_one_the_po_describes() -> None:
    compiled = gettext.GNUTranslations(MO.open("rb"))
    catalogue = read_po(PO.open("rb"), locale="fr")
    stale = []
    for m in catalogue:
        if not m.id or m.fuzzy:
            continue
        if isinstance(m.id, str):
            if compiled.gettext(m.id) != m.string:
                stale.append(m.id)
        else:
            assert isinstance(m.string, (tuple, list))  # a plural's translations
            if compiled.ngettext(m.id[0], m.id[1], 2) != m.string[1]:
                stale.append(m.id[0])
    assert not stale, f"messages.mo is older than messages.po (run `make messages`): {stale[:5]}"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("en-GB,en;q=0.9", "en"),
        ("de-DE,de;q=0.9", "fr"),
        ("de;q=1, en;q=0.5, fr;q=0.4", "en"),
        ("", "fr"),
        ("en;q=0, fr;q=0.1", "fr"),
        ("x" * 5000, "fr"),
    ],
)
def test_the_browser_language_is_negotiated(header: str, language: str) -> None:
    assert i18n.negotiate(header) == language


def test_pages_speak_french_first_then_the_reader_choice(
    app_client: TestClient, world: World
) -> None:
    sign_in_page = app_client.get("/console/sign-in", headers={"Accept-Language": "de"})
    assert "Connexion à Masterline" in sign_in_page.text
    english = app_client.get("/console/sign-in", headers={"Accept-Language": "en-US"})
    assert "Sign in to Masterline" in english.text
    csrf = sign_in(app_client, world.token(Role.TECHNICIAN))
    board = app_client.get(f"/console/benches/{world.bench.id}")
    assert board.headers["content-language"] == "fr" and "Banc B1" in board.text
    switched = app_client.post(
        "/console/language",
        data={"language": "en", "next": f"/console/benches/{world.bench.id}", "csrf": csrf},
        follow_redirects=False,
    )
    assert switched.status_code == 303
    board = app_client.get(f"/console/benches/{world.bench.id}", headers={"Accept-Language": "fr"})
    # The switch is remembered in the session, over the browser's preference.
    assert board.headers["content-language"] == "en" and "Bench B1" in board.text
