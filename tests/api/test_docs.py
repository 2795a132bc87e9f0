"""The API documentation pages load every asset from the server itself (an offline bench
network has no CDN)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


@pytest.mark.slow  # renders the docs pages
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets(app_client: TestClient, page: str) -> None:
    r = app_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    # No outside host anywhere in the page: not in an attribute, not in its inline script.
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I) == []
    parser = _Refs()
    parser.feed(html)
    assets = [u for u in parser.refs if not u.startswith("#")]
    assert len(assets) >= 2  # the script and the favicon at least
    for url in assets:
        got = app_client.get(url)
        assert got.status_code == 200, url
        assert len(got.content) > 0
    # The page's own script names the document it renders: served too.
    assert "/openapi.json" in html
    assert app_client.get("/openapi.json").status_code == 200
