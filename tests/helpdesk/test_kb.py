"""The knowledge base: versions, safe rendering, search on both databases, access."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from core.principal import Role
from helpdesk import kb, kb_text
from helpdesk.schemas import ArticleTags
from tests.conftest import auth
from tests.support.factories import World

HOSTILE = (
    "# Titre\n\n<script>alert(1)</script>\n\n"
    '<img src=x onerror="alert(2)">\n\n'
    "[piège](javascript:alert(3)) [ok](https://intranet.acme.example/vpn) "
    "![photo](https://tracker.example/pixel.png)\n\n"
    "Connexion **VPN** et `code`"
)


def _create(client: TestClient, token: str, **body: Any) -> Any:
    payload = {"slug": "vpn", "language": "fr", "title": "VPN", "body": "texte"} | body
    return client.post("/helpdesk/articles", json=payload, headers=auth(token))


def test_articles_are_versioned_and_old_versions_stay_readable(
    app_client: TestClient, world: World
) -> None:
    token = world.token(Role.HELPDESK, "ACME")
    r = _create(app_client, token, body="Première version")
    assert r.status_code == 201, r.text
    article = r.json()
    assert (article["version"], article["client_code"]) == (1, "ACME")
    assert _create(app_client, token).status_code == 409  # same slug and language
    assert _create(app_client, token, language="en").status_code == 201  # its translation
    path = f"/helpdesk/articles/{article['id']}"
    edit = {
        "based_on": 1,
        "title": "VPN (v2)",
        "body": "Deuxième version",
        "tags": {"vpn": ["ikev2"]},
    }
    r = app_client.put(path, json=edit, headers=auth(token))
    assert (r.status_code, r.json()["version"]) == (200, 2)
    stale = app_client.put(path, json=edit, headers=auth(token))
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    assert app_client.get(path, headers=auth(token)).json()["body"] == "Deuxième version"
    old = app_client.get(path, params={"version": 1}, headers=auth(token)).json()
    assert (old["body"], old["title"], old["tags"]["vpn"]) == ("Première version", "VPN", [])
    versions = app_client.get(f"{path}/versions", headers=auth(token)).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert app_client.get(path, params={"version": 3}, headers=auth(token)).status_code == 404
    # Another company's article does not exist for ACME's desk, nor for its DSI.
    other = _create(app_client, world.token(Role.DSI, "GLOBEX"), slug="globex").json()
    for t in (token, world.token(Role.DSI, "ACME")):
        assert (
            app_client.get(f"/helpdesk/articles/{other['id']}", headers=auth(t)).status_code == 404
        )
    # A centre-wide token must say for which client it writes.
    assert _create(app_client, world.token(Role.HELPDESK), slug="x").status_code == 422
    # Archived: out of listings, still readable by id.
    app_client.post(f"{path}/archive", headers=auth(token))
    listed = app_client.get("/helpdesk/articles", headers=auth(token)).json()
    assert [a["language"] for a in listed] == ["en"]
    assert app_client.get(path, headers=auth(token)).json()["archived"] is True


def test_rendering_shows_raw_html_as_text_and_drops_unsafe_links() -> None:
    html = kb_text.render_html(HOSTILE)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    assert "javascript:" not in html.replace("[piège](javascript:alert(3))", "")
    assert 'rel="noopener noreferrer nofollow" href="https://intranet.acme.example/vpn"' in html
    assert "<strong>VPN</strong>" in html and "<code>code</code>" in html


def test_search_folds_accents_and_plurals_and_matches_prefixes(
    app_client: TestClient, world: World
) -> None:
    token = world.token(Role.HELPDESK, "ACME")
    _create(app_client, token, slug="imprimante", title="Installer une imprimante", body="Pilotes.")
    _create(
        app_client,
        token,
        slug="vpn-connexion",
        title="Problème de connexion VPN",
        body="Si la connexion échoue, redémarrez le client VPN. Vérifiez les identifiants.",
        tags={"vpn": ["wireguard"]},
    )
    _create(app_client, token, slug="teams", title="Teams", body="Réunions et connexions audio.")
    _create(app_client, world.token(Role.DSI, "GLOBEX"), slug="g", title="Connexion VPN Globex")

    def titles(q: str, t: str = token) -> list[str]:
        r = app_client.get("/helpdesk/search", params={"q": q}, headers=auth(t))
        assert r.status_code == 200, r.text
        return [h["title"] for h in r.json()]

    assert titles("probleme connexion") == ["Problème de connexion VPN"]
    assert titles("CONNEXIONS") == ["Problème de connexion VPN", "Teams"]  # title weighs more
    assert titles("imprimantes") == ["Installer une imprimante"]
    assert titles("impri") == ["Installer une imprimante"]
    assert titles("wireguard") == ["Problème de connexion VPN"]  # from its tags
    assert titles("redemarrez vpn") == ["Problème de connexion VPN"]
    assert titles("fax") == []
    everyone = titles("connexion vpn", world.token(Role.HELPDESK))
    assert sorted(everyone) == ["Connexion VPN Globex", "Problème de connexion VPN"]
    hit = app_client.get("/helpdesk/search", params={"q": "echoue"}, headers=auth(token)).json()
    assert "échoue" in hit[0]["snippet"]
    bad = app_client.get("/helpdesk/search", params={"q": "le la"}, headers=auth(token))
    assert bad.status_code == 422


def test_which_articles_apply_to_a_laptop() -> None:
    laptop = kb.Profile(
        vpn="wireguard",
        tools=("Microsoft Teams", "Zoom"),
        model="Latitude 5440",
        vendor="Dell",
        os="windows",
    )

    def applies(**tags: list[str]) -> int | None:
        return kb.applies(ArticleTags(**tags).model_dump(), laptop)

    assert applies() == 0
    assert applies(vpn=["wireguard", "openvpn"]) == 1
    assert applies(vpn=["openvpn"]) is None
    assert applies(tools=["teams"]) == 1
    assert applies(tools=["Microsoft Teams"]) == 1
    assert applies(tools=["Microsoft"]) == 1
    assert applies(tools=["Team"]) == 1  # a plural is the same word
    assert applies(tools=["Tea"]) is None  # whole words only
    assert applies(tools=["Slack"]) is None
    assert applies(models=["Dell Latitude 5440"], os=["windows"]) == 2
    assert applies(models=["latitude 5440"]) == 1
    assert applies(models=["Latitude 7440"]) is None
    assert applies(os=["linux"]) is None
    assert kb.applies(ArticleTags(vpn=["ikev2"]).model_dump(), kb.Profile()) is None
