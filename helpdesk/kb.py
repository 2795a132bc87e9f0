"""The knowledge base: per-client articles in Markdown (French and English), versioned,
tagged by what they apply to, searchable the same way on SQLite and PostgreSQL.

- **Versions.** An edit never rewrites: it adds ``kb_article_version`` N+1 and moves
  the article's current pointer, under the article's row lock, and only if the edit
  was based on the current version (else 409: two advisors editing at once do not
  silently lose one edit). Every old version stays readable.
- **Rendering.** markdown-it-py, CommonMark, with raw HTML *off*: an article's
  ``<script>`` is shown as text. Links are kept only for http(s), mailto and tel;
  images are not rendered (the console serves every asset itself, so an article cannot
  pull a picture from elsewhere).
- **Search.** Our own word index (``kb_term``): words folded to lower case without
  accents, short stop words dropped, a final plural ``s``/``x`` removed, each with a
  weight (title 3, tag 2, body 1 per occurrence, body capped at 5). A query matches
  articles holding *every* query word as a prefix of an indexed word, ranked by weight.
  Why not each database's full-text engine: SQLite's FTS5 and PostgreSQL's tsvector
  tokenise, stem and rank differently (and folding accents on PostgreSQL needs the
  ``unaccent`` extension, which needs a superuser), so one query would answer
  differently on the two databases. A knowledge base holds hundreds of articles per
  client, not millions of documents; a B-tree range on ``(client_id, term)`` answers a
  prefix in well under a millisecond on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from helpdesk import repository
from helpdesk.errors import (
    ArticleExists,
    ArticleNotFound,
    ArticleVersionNotFound,
    StaleVersion,
)
from helpdesk.kb_text import fold, index_weights, render_html, words
from helpdesk.models import Article, ArticleVersion
from helpdesk.schemas import (
    ArticleBrief,
    ArticleCreate,
    ArticleEdit,
    ArticleRead,
    ArticleTags,
    SearchHit,
    VersionBrief,
)
from inventory.models import ClientCompany

MAX_QUERY_WORDS = 8


# Access.
def client_for_write(session: Session, client_code: str | None, principal: Principal) -> int:
    """A bound caller writes for its own client; others name one.

    :raises ClientNotFound: unknown, or another company's.
    :raises InvalidInput: no client named by a caller bound to none.
    """
    from inventory import service as inventory

    if principal.bound:
        assert principal.client_id is not None
        if client_code is not None:
            inventory.client_by_code(session, client_code, principal)
        return principal.client_id
    if not client_code:
        raise InvalidInput("client_code is required")
    client = inventory.client_by_code(session, client_code, principal)
    assert client.id is not None
    return client.id


def get_article(
    session: Session, article_id: int, principal: Principal, *, for_update: bool = False
) -> Article:
    """:raises ArticleNotFound: unknown or another company's."""
    return principal.visible(
        repository.get_article(session, article_id, for_update=for_update),
        ArticleNotFound(str(article_id)),
    )


# Writes.
def create_article(session: Session, body: ArticleCreate, principal: Principal) -> Article:
    """Version 1 of a new article.

    :raises ArticleExists: the client already has this slug in this language (409).
    """
    client_id = client_for_write(session, body.client_code, principal)
    language = body.language.value
    if repository.article_by_slug(session, client_id, body.slug, language) is not None:
        raise ArticleExists(body.slug, language)
    now = utcnow()
    tags = body.tags.model_dump()
    article = Article(
        client_id=client_id,
        slug=body.slug,
        language=language,
        version=1,
        title=body.title,
        tags=tags,
        welcome_section=body.welcome_section,
        created_at=now,
        updated_at=now,
    )
    session.add(article)
    session.flush()
    assert article.id is not None
    session.add(
        ArticleVersion(
            article_id=article.id,
            version=1,
            title=body.title,
            body=body.body,
            tags=tags,
            welcome_section=body.welcome_section,
            author=principal.actor,
            created_at=now,
        )
    )
    repository.replace_terms(session, article, index_weights(body.title, body.body, body.tags))
    session.flush()
    return article


def edit_article(
    session: Session, article_id: int, body: ArticleEdit, principal: Principal
) -> Article:
    """A new version; the previous ones stay readable.

    :raises ArticleNotFound: unknown or another company's.
    :raises StaleVersion: ``based_on`` is not the current version (409).
    """
    article = get_article(session, article_id, principal, for_update=True)
    if body.based_on != article.version:
        raise StaleVersion(article_id, article.version, body.based_on)
    now = utcnow()
    tags = body.tags.model_dump()
    article.version += 1
    article.title = body.title
    article.tags = tags
    article.welcome_section = body.welcome_section
    article.updated_at = now
    article.archived_at = None
    session.add(article)
    session.add(
        ArticleVersion(
            article_id=article_id,
            version=article.version,
            title=body.title,
            body=body.body,
            tags=tags,
            welcome_section=body.welcome_section,
            author=principal.actor,
            created_at=now,
        )
    )
    repository.replace_terms(session, article, index_weights(body.title, body.body, body.tags))
    session.flush()
    return article


def archive_article(session: Session, article_id: int, principal: Principal) -> Article:
    """Hidden from listings, search and look-ups; its versions stay readable."""
    article = get_article(session, article_id, principal, for_update=True)
    if article.archived_at is None:
        article.archived_at = utcnow()
        session.add(article)
        session.flush()
    return article


# Reads.
def read(
    session: Session, article_id: int, principal: Principal, *, version: int | None = None
) -> ArticleRead:
    """The current version, or ``version``.

    :raises ArticleNotFound, ArticleVersionNotFound:
    """
    article = get_article(session, article_id, principal)
    assert article.id is not None
    number = version if version is not None else article.version
    row = repository.get_version(session, article.id, number)
    if row is None:
        raise ArticleVersionNotFound(article.id, number)
    client = repository.clients(session, [article.client_id])[article.client_id]
    return ArticleRead(
        id=article.id,
        client_code=client.code,
        slug=article.slug,
        language=article.language,
        version=row.version,
        title=row.title,
        tags=ArticleTags.model_validate(row.tags),
        welcome_section=row.welcome_section,
        body=row.body,
        html=render_html(row.body),
        author=row.author,
        created_at=row.created_at,
        archived=article.archived_at is not None,
    )


def versions(session: Session, article_id: int, principal: Principal) -> list[VersionBrief]:
    article = get_article(session, article_id, principal)
    assert article.id is not None
    return [
        VersionBrief(version=v.version, title=v.title, author=v.author, created_at=v.created_at)
        for v in repository.list_versions(session, article.id)
    ]


def brief(article: Article) -> ArticleBrief:
    assert article.id is not None
    return ArticleBrief(
        id=article.id,
        slug=article.slug,
        language=article.language,
        title=article.title,
        version=article.version,
    )


def list_articles(
    session: Session, principal: Principal, *, client_code: str | None, language: str | None
) -> list[ArticleBrief]:
    client_id = principal.client_scope
    if client_code is not None:
        from inventory import service as inventory

        client = inventory.client_by_code(session, client_code, principal)
        client_id = client.id
    rows = repository.list_articles(session, client_id=client_id, language=language)
    return [brief(a) for a in rows]


def search(
    session: Session,
    query: str,
    principal: Principal,
    *,
    client_code: str | None = None,
    language: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """Articles holding every word of ``query`` (as a prefix), best first.

    :raises InvalidInput: a query with no searchable word.
    """
    terms = list(dict.fromkeys(words(query)))[:MAX_QUERY_WORDS]
    if not terms:
        raise InvalidInput("the query has no searchable word")
    client_id = principal.client_scope
    if client_code is not None:
        from inventory import service as inventory

        client_id = inventory.client_by_code(session, client_code, principal).id
    scores: dict[int, int] | None = None
    for term in terms:
        best: dict[int, int] = {}
        for article_id, weight in repository.term_matches(session, term, client_id=client_id):
            best[article_id] = max(best.get(article_id, 0), weight)
        if scores is None:
            scores = best
        else:
            scores = {a: s + best[a] for a, s in scores.items() if a in best}
        if not scores:
            return []
    assert scores is not None
    articles = repository.articles_by_ids(session, scores)
    ranked = sorted(
        (a for a in articles.values() if a.archived_at is None)
        if language is None
        else (a for a in articles.values() if a.archived_at is None and a.language == language),
        key=lambda a: (-scores[a.id or 0], a.slug, a.language),
    )[:limit]
    codes = {
        c.id: c.code for c in repository.clients(session, {a.client_id for a in ranked}).values()
    }
    hits = []
    for a in ranked:
        assert a.id is not None
        current = repository.get_version(session, a.id, a.version)
        hits.append(
            SearchHit(
                **brief(a).model_dump(),
                client_code=codes.get(a.client_id, ""),
                score=scores[a.id],
                snippet=snippet(current.body if current else "", terms),
            )
        )
    return hits


def snippet(body: str, terms: Sequence[str], width: int = 160) -> str:
    """The first sentence-ish stretch of ``body`` holding a query word, in plain text."""
    plain = re.sub(r"[#*_`>\[\]()]+", " ", body)
    plain = re.sub(r"\s+", " ", plain).strip()
    folded = fold(plain)
    at = min((i for i in (folded.find(t) for t in terms) if i >= 0), default=0)
    start = max(0, at - width // 3)
    text = plain[start : start + width].strip()
    return ("…" if start else "") + text + ("…" if start + width < len(plain) else "")


# Which articles apply to a laptop.
@dataclass(frozen=True)
class Profile:
    """What a laptop is, in the terms articles are tagged with."""

    vpn: str | None = None
    tools: tuple[str, ...] = ()
    model: str | None = None
    vendor: str | None = None
    os: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _tool_matches(tag: str, tools: Iterable[str]) -> bool:
    want = words(tag)
    for tool in tools:
        have = words(tool)
        n = len(want)
        if want and any(have[i : i + n] == want for i in range(len(have) - n + 1)):
            return True
    return False


def _model_matches(tag: str, profile: Profile) -> bool:
    if profile.model is None:
        return False
    names = {fold(profile.model)}
    if profile.vendor:
        names.add(fold(f"{profile.vendor} {profile.model}"))
    return fold(tag.strip()) in names


def applies(tags: dict[str, Any], profile: Profile) -> int | None:
    """None when the article does not apply; else how many kinds of tag it matched (the
    more specific, the higher)."""
    t = ArticleTags.model_validate(tags)
    matched = 0
    if t.vpn:
        if profile.vpn not in t.vpn:
            return None
        matched += 1
    if t.tools:
        if not any(_tool_matches(tag, profile.tools) for tag in t.tools):
            return None
        matched += 1
    if t.models:
        if not any(_model_matches(tag, profile) for tag in t.models):
            return None
        matched += 1
    if t.os:
        if profile.os not in t.os:
            return None
        matched += 1
    return matched


def applicable(
    session: Session, client: ClientCompany, profile: Profile, *, language: str
) -> list[Article]:
    """The client's articles that apply to ``profile``, one per slug, in ``language``
    when it exists (else the other language), most specific first."""
    assert client.id is not None
    by_slug: dict[str, list[Article]] = {}
    for article in repository.list_articles(session, client_id=client.id, language=None):
        by_slug.setdefault(article.slug, []).append(article)
    picked: list[tuple[int, str, Article]] = []
    for slug, group in by_slug.items():
        group.sort(key=lambda a: (a.language != language, a.language))
        article = group[0]
        score = applies(article.tags, profile)
        if score is not None:
            picked.append((-score, slug, article))
    picked.sort(key=lambda p: (p[0], p[1]))
    return [a for _, _, a in picked]


def current_bodies(session: Session, articles: Sequence[Article]) -> dict[int, str]:
    out: dict[int, str] = {}
    for a in articles:
        assert a.id is not None
        row = repository.get_version(session, a.id, a.version)
        out[a.id] = row.body if row else ""
    return out
