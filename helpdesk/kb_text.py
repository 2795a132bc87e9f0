"""An article's text: its Markdown rendered safely (the one parser, raw HTML off, safe links
only, no images), and the words the knowledge base's search index keeps (folded, stop
words dropped, final plural removed, weighted by where they occur)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING

from helpdesk.schemas import ArticleTags

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

SAFE_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_FRENCH_STOP = "le la les un une des du de et ou en au aux ce ces cet cette se sa son ses sur"
_FRENCH_STOP += " pour par pas ne que qui quoi est sont dans avec votre vos nous vous il elle on"
_ENGLISH_STOP = "the an and or of to in on at is are be for with your you it this that by as"
_STOP = frozenset((_FRENCH_STOP + " " + _ENGLISH_STOP + " from").split())


@lru_cache(maxsize=1)
def markdown() -> MarkdownIt:
    """The one Markdown parser: CommonMark, raw HTML off, safe links only, no images."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
    md.disable("image")

    def validate(url: str) -> bool:
        return url.strip().lower().startswith(SAFE_SCHEMES)

    md.validateLink = validate  # type: ignore[method-assign]
    return md


def render_html(body: str) -> str:
    """An article's Markdown as HTML that is safe to put in a page."""
    html = markdown().render(body)
    # Links leave the console: no referrer, no access to the opener.
    return html.replace("<a href=", '<a rel="noopener noreferrer nofollow" href=')


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("œ", "oe")


def _stem(word: str) -> str:
    if len(word) > 3 and word[-1] in "sx":
        word = word[:-1]
    return word[:40]


def words(text: str) -> list[str]:
    """Index words of ``text``: folded, stop words dropped, final plural removed."""
    return [_stem(w) for w in re.findall(r"[a-z0-9]+", fold(text)) if w not in _STOP and len(w) > 1]


def index_weights(title: str, body: str, tags: ArticleTags) -> dict[str, int]:
    weights: Counter[str] = Counter()
    for w in words(title):
        weights[w] += 3
    tag_text = " ".join([*tags.vpn, *tags.tools, *tags.models, *tags.os])
    for w in words(tag_text):
        weights[w] += 2
    for w, n in Counter(words(body)).items():
        weights[w] += min(n, 5)
    return dict(weights)
