"""The knowledge base: articles per client, in French and English, versioned; search,
read (any version), write (admin, help desk, the client's IT), archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from api.deps import SessionDep
from console.deps import PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import done, go, page, page_router
from core.errors import InvalidInput
from core.principal import Role
from helpdesk import kb
from helpdesk.models import WelcomeSection
from helpdesk.schemas import ArticleCreate, ArticleEdit, ArticleRead, ArticleTags
from inventory import service as inventory
from inventory.models import ClientCompany
from logistics.models import Language

router = page_router()
WRITERS = (Role.ADMIN, Role.HELPDESK, Role.DSI)
"""Who reads and writes articles (as the API's ``/helpdesk/articles``)."""
KbViewer = Annotated[Viewer, Depends(PageAllow(*WRITERS))]
NAV = register(NavItem("kb", N_("Knowledge base"), "/console/kb", frozenset(WRITERS), 71))

SECTIONS = {
    WelcomeSection.SIGN_IN: N_("first sign-in"),
    WelcomeSection.VPN: N_("connecting to the VPN"),
    WelcomeSection.TOOLS: N_("work tools"),
}
ClientCode = Annotated[str | None, Query(max_length=32)]
Text = Annotated[str, Form(min_length=1, max_length=200)]
Body = Annotated[str, Form(min_length=1, max_length=100_000)]
TagList = Annotated[str | None, Form(max_length=2000)]
Section = Annotated[WelcomeSection | None, Form()]


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _tags(vpn: str | None, tools: str | None, models: str | None, os: str | None) -> ArticleTags:
    """Comma-separated fields → the article's tags (lower-case VPN kinds and OS).

    :raises InvalidInput: a tag the API would refuse, named by its field.
    """
    try:
        return ArticleTags(
            vpn=[v.lower() for v in _split(vpn)],
            tools=_split(tools),
            models=_split(models),
            os=[o.lower() for o in _split(os)],
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"tags.{first['loc'][0]}: {first['msg']}") from e


def _invalid(e: ValidationError) -> InvalidInput:
    first = e.errors()[0]
    return InvalidInput(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _clients(session: Session, viewer: Viewer) -> list[ClientCompany]:
    return list(inventory.list_clients(session, viewer.principal))


@router.get("/console/kb")
def articles(
    request: Request,
    session: SessionDep,
    viewer: KbViewer,
    q: Annotated[str | None, Query(max_length=200)] = None,
    client: ClientCode = None,
    language: Language | None = None,
) -> HTMLResponse:
    """Every article (of the viewer's clients), or those holding every word of ``q``."""
    lang = language.value if language else None
    hits, listed, problem = [], [], None
    if q and q.strip():
        try:
            hits = kb.search(
                session, q, viewer.principal, client_code=client or None, language=lang, limit=50
            )
        except InvalidInput as e:
            problem = e.message
    else:
        listed = kb.list_articles(
            session, viewer.principal, client_code=client or None, language=lang
        )
    return page(
        request,
        "kb/list.html",
        viewer=viewer,
        q=q or "",
        client=client or "",
        language=lang or "",
        clients=_clients(session, viewer),
        hits=hits,
        listed=listed,
        problem=problem,
    )


@router.get("/console/kb/new")
def new_article(request: Request, session: SessionDep, viewer: KbViewer) -> HTMLResponse:
    return page(
        request,
        "kb/edit.html",
        viewer=viewer,
        article=None,
        clients=_clients(session, viewer),
        sections=SECTIONS,
        bound=viewer.principal.bound,
    )


@router.post("/console/kb")
def create(
    request: Request,
    session: SessionDep,
    viewer: KbViewer,
    slug: Annotated[str, Form(min_length=1, max_length=80)],
    language: Annotated[Language, Form()],
    title: Text,
    body: Body,
    client_code: Annotated[str | None, Form(max_length=32)] = None,
    vpn: TagList = None,
    tools: TagList = None,
    models: TagList = None,
    os: TagList = None,
    welcome_section: Section = None,
) -> Response:
    try:
        wanted = ArticleCreate(
            client_code=client_code or None,
            slug=slug.strip(),
            language=language,
            title=title,
            body=body,
            tags=_tags(vpn, tools, models, os),
            welcome_section=welcome_section,
        )
    except ValidationError as e:
        raise _invalid(e) from e
    article = kb.create_article(session, wanted, viewer.principal)
    return go(request, f"/console/kb/{article.id}")


@router.get("/console/kb/{article_id}")
def read(
    article_id: int,
    request: Request,
    session: SessionDep,
    viewer: KbViewer,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> HTMLResponse:
    article = kb.read(session, article_id, viewer.principal, version=version)
    current = kb.read(session, article_id, viewer.principal) if version is not None else article
    return page(
        request,
        "kb/article.html",
        viewer=viewer,
        article=article,
        current_version=current.version,
        versions=kb.versions(session, article_id, viewer.principal),
        sections=SECTIONS,
    )


@router.get("/console/kb/{article_id}/edit")
def edit_form(
    article_id: int, request: Request, session: SessionDep, viewer: KbViewer
) -> HTMLResponse:
    article: ArticleRead = kb.read(session, article_id, viewer.principal)
    return page(
        request,
        "kb/edit.html",
        viewer=viewer,
        article=article,
        clients=[],
        sections=SECTIONS,
        bound=True,
    )


@router.post("/console/kb/{article_id}")
def edit(
    article_id: int,
    request: Request,
    session: SessionDep,
    viewer: KbViewer,
    based_on: Annotated[int, Form(ge=1, le=2**31)],
    title: Text,
    body: Body,
    vpn: TagList = None,
    tools: TagList = None,
    models: TagList = None,
    os: TagList = None,
    welcome_section: Section = None,
) -> Response:
    """A new version. Someone else's edit in between: 409, the form keeps the text."""
    kb.get_article(session, article_id, viewer.principal)  # another company's: 404 first
    try:
        wanted = ArticleEdit(
            based_on=based_on,
            title=title,
            body=body,
            tags=_tags(vpn, tools, models, os),
            welcome_section=welcome_section,
        )
    except ValidationError as e:
        raise _invalid(e) from e
    kb.edit_article(session, article_id, wanted, viewer.principal)
    return go(request, f"/console/kb/{article_id}")


@router.post("/console/kb/{article_id}/archive")
def archive(article_id: int, request: Request, session: SessionDep, viewer: KbViewer) -> Response:
    article = kb.archive_article(session, article_id, viewer.principal)
    return done(
        request,
        viewer,
        N_("“%(title)s” archived: out of look-ups, search and welcome sheets."),
        fallback=f"/console/kb/{article_id}",
        title=article.title,
    )
