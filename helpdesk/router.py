"""Help-desk HTTP routes. Parse, call one service, render: each is what a console page
needs in one call.

Roles: ``helpdesk`` (one client, or every client when its token names none) and
``admin`` work the desk; a DSI reads and writes its own client's articles and reads its
reports and satisfaction results; logistics prints welcome sheets (they carry a name).
``GET /help/{link}`` is the one route without a token: the QR code of a welcome sheet
points at it, and its signature is the access check (``helpdesk.welcome``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from api.deps import Allow, SessionDep, get_db, new_router
from core.principal import Principal, Role
from core.timeutil import utcnow
from helpdesk import kb, lookup, reports, service, survey, welcome
from helpdesk.errors import NothingFound
from helpdesk.models import CallStatus
from helpdesk.schemas import (
    MONTH_PATTERN,
    AnswerIn,
    ArticleBrief,
    ArticleCreate,
    ArticleEdit,
    ArticleRead,
    CallOutcome,
    CallRead,
    CallUpdate,
    ClientResult,
    ClientTrend,
    ContactCreate,
    ContactRead,
    LookupRequest,
    LookupResult,
    QueueIn,
    QueueRead,
    ReasonRow,
    RouteAnswer,
    SearchHit,
    SurveyCreate,
    SurveyRead,
    VersionBrief,
    WaveRow,
)
from logistics.models import Language
from logistics.router import RawCsv, csv_response

router = new_router(tags=["helpdesk"])

Desk = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.HELPDESK))]
Writers = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.HELPDESK, Role.DSI))]
Printers = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.LOGISTICS))]
Admin = Annotated[Principal, Depends(Allow(Role.ADMIN))]
OptOut = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.HELPDESK, Role.LOGISTICS))]
ClientCode = Annotated[str | None, Query(max_length=32, alias="client")]
Month = Annotated[str, Path(pattern=MONTH_PATTERN, examples=["2026-11"])]
Format = Annotated[Literal["json", "csv"], Query(description="`csv` for a spreadsheet.")]


# The phone menu.
@router.get(
    "/helpdesk/route",
    response_model=RouteAnswer,
    responses={200: {"content": {"text/plain": {"example": "acme-support\n"}}}},
)
async def route(
    request: Request,
    principal: Desk,
    number: Annotated[
        str, Query(description="What the caller typed (the help code). Anything is accepted.")
    ] = "",
) -> Response:
    """The queue to send a call to, for the number the caller typed: plain text (the
    default) or JSON (`Accept: application/json`). A number that is not a known help
    code gets the default queue, never an error."""
    db = get_db(request)

    # The phone menu's hot path: one trip to the thread pool for the read transaction
    # and its one query; no per-request session dependency to set up and tear down.
    def work() -> RouteAnswer:
        with db.session(write=False) as session:
            return service.route_number(session, number, principal)

    answer = await anyio.to_thread.run_sync(work)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(answer.model_dump())
    return PlainTextResponse(answer.queue + "\n")


@router.get("/helpdesk/queues", response_model=list[QueueRead])
def list_queues(session: SessionDep, principal: Desk) -> list[QueueRead]:
    """The queues the caller's calls go to (its client's and the default)."""
    return service.list_queues(session, principal)


@router.put("/helpdesk/queues/default", response_model=QueueRead)
def set_default_queue(body: QueueIn, session: SessionDep, principal: Admin) -> QueueRead:
    """The centre's default queue: unknown or mistyped numbers, clients without one."""
    row = service.set_queue(session, None, body, principal)
    return QueueRead(
        client_code=None, name=row.name, phone_number=row.phone_number, hours=row.hours
    )


@router.put("/helpdesk/queues/{client_code}", response_model=QueueRead)
def set_queue(client_code: str, body: QueueIn, session: SessionDep, principal: Admin) -> QueueRead:
    """A client's queue and the help-desk number printed on its welcome sheets."""
    row = service.set_queue(session, client_code, body, principal)
    return QueueRead(
        client_code=client_code, name=row.name, phone_number=row.phone_number, hours=row.hours
    )


# Look-up.
@router.post("/helpdesk/lookup", response_model=LookupResult)
def lookup_laptop(body: LookupRequest, session: SessionDep, principal: Desk) -> LookupResult:
    """Any identifier (serial, asset tag, hostname, e-mail, tracking number, help code)
    → the laptop's card. In a POST body: an e-mail must not land in access logs."""
    return LookupResult(
        items=lookup.lookup(session, body.q, principal, language=body.language.value)
    )


# Knowledge base.
@router.get("/helpdesk/articles", response_model=list[ArticleBrief])
def list_articles(
    session: SessionDep,
    principal: Writers,
    client: ClientCode = None,
    language: Language | None = None,
) -> list[ArticleBrief]:
    return kb.list_articles(
        session, principal, client_code=client, language=language.value if language else None
    )


@router.post("/helpdesk/articles", response_model=ArticleRead, status_code=201)
def create_article(body: ArticleCreate, session: SessionDep, principal: Writers) -> ArticleRead:
    """Version 1 of an article (Markdown; raw HTML is shown as text)."""
    article = kb.create_article(session, body, principal)
    assert article.id is not None
    return kb.read(session, article.id, principal)


@router.get("/helpdesk/search", response_model=list[SearchHit])
def search(
    session: SessionDep,
    principal: Writers,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    client: ClientCode = None,
    language: Language | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SearchHit]:
    """Articles holding every word of `q` (accents and case ignored, words as prefixes)."""
    lang = language.value if language else None
    return kb.search(session, q, principal, client_code=client, language=lang, limit=limit)


@router.get("/helpdesk/articles/{article_id}", response_model=ArticleRead)
def read_article(
    article_id: int,
    session: SessionDep,
    principal: Writers,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> ArticleRead:
    """The current version, or any older one (`version`)."""
    return kb.read(session, article_id, principal, version=version)


@router.put("/helpdesk/articles/{article_id}", response_model=ArticleRead)
def edit_article(
    article_id: int, body: ArticleEdit, session: SessionDep, principal: Writers
) -> ArticleRead:
    """A new version. 409 when `based_on` is not the current version."""
    kb.edit_article(session, article_id, body, principal)
    return kb.read(session, article_id, principal)


@router.get("/helpdesk/articles/{article_id}/versions", response_model=list[VersionBrief])
def article_versions(
    article_id: int, session: SessionDep, principal: Writers
) -> list[VersionBrief]:
    return kb.versions(session, article_id, principal)


@router.post("/helpdesk/articles/{article_id}/archive", response_model=ArticleBrief)
def archive_article(article_id: int, session: SessionDep, principal: Writers) -> ArticleBrief:
    """Out of listings, search, look-ups and sheets; versions stay readable."""
    return kb.brief(kb.archive_article(session, article_id, principal))


# Contacts and reports.
@router.post("/helpdesk/contacts", response_model=ContactRead, status_code=201)
def record_contact(body: ContactCreate, session: SessionDep, principal: Desk) -> ContactRead:
    """Record a contact (no advisor is recorded)."""
    return ContactRead.model_validate(service.record_contact(session, body, principal))


@router.get("/helpdesk/contacts", response_model=list[ContactRead])
def list_contacts(
    session: SessionDep,
    principal: Desk,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Format = "json",
) -> list[ContactRead] | Response:
    rows = service.list_contacts(
        session,
        principal,
        since=_utc(since) if since else None,
        until=_utc(until) if until else None,
        cursor=cursor,
        limit=limit,
    )
    items = [ContactRead.model_validate(r) for r in rows]
    if format == "csv":
        return csv_response([i.model_dump(mode="json") for i in items], filename="contacts.csv")
    return items


@router.get("/helpdesk/reports/reasons", response_model=list[ReasonRow])
def reason_report(
    session: SessionDep,
    principal: Writers,
    since: datetime | None = None,
    until: datetime | None = None,
    format: Format = "json",
) -> list[ReasonRow] | Response:
    """Contacts per week, client, model, reason and configuration item (default: the
    last 12 weeks)."""
    end = _utc(until) if until is not None else utcnow()
    start = _utc(since) if since is not None else max(end, _FLOOR) - _WEEKS
    rows = reports.reasons(session, principal, since=start, until=end)
    if format == "csv":
        return csv_response([r.model_dump(mode="json") for r in rows], filename="reasons.csv")
    return rows


@router.get("/helpdesk/reports/waves", response_model=list[WaveRow])
def wave_report(
    session: SessionDep,
    principal: Writers,
    delivery_id: int | None = None,
    days: Annotated[int, Query(ge=1, le=90)] = reports.FIRST_DAYS,
    format: Format = "json",
) -> list[WaveRow] | Response:
    """Contacts per 100 laptops in their first `days` days at home, per wave."""
    rows = reports.waves(session, principal, delivery_id=delivery_id, days=days)
    if format == "csv":
        return csv_response([r.model_dump(mode="json") for r in rows], filename="waves.csv")
    return rows


_WEEKS = timedelta(weeks=12)
_FLOOR = datetime.min.replace(tzinfo=UTC) + _WEEKS


def _utc(at: datetime) -> datetime:
    """A query's time without a zone is UTC (every stored time is)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# Welcome sheets.
_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "One sheet per laptop."}
}


@router.get("/helpdesk/welcome", response_class=Response, responses=_PDF)
def welcome_sheets(
    session: SessionDep,
    principal: Printers,
    device_id: int | None = None,
    delivery_id: int | None = None,
) -> Response:
    """Welcome sheets (PDF) of one laptop, or of a delivery's shipped laptops."""
    sheets = welcome.sheets_for(session, principal, device_id=device_id, delivery_id=delivery_id)
    return Response(welcome.pdf(sheets), media_type="application/pdf")


@router.post("/helpdesk/welcome/dispatch-file", response_class=Response, responses=_PDF)
def welcome_for_dispatch_file(session: SessionDep, principal: Printers, data: RawCsv) -> Response:
    """Welcome sheets of the laptops of a dispatch file (its raw CSV as the body), in
    the file's order, to print and put in the boxes."""
    serials = welcome.serials_of_dispatch_file(data)
    sheets = welcome.sheets_for(session, principal, serials=serials)
    return Response(welcome.pdf(sheets), media_type="application/pdf")


@router.get("/help/{link}", response_class=HTMLResponse, include_in_schema=False)
def help_page(link: Annotated[str, Path(max_length=200)], session: SessionDep) -> HTMLResponse:
    """The articles of one laptop, for the phone that scanned its welcome sheet."""
    page = welcome.help_page(session, link)
    if page is None:
        raise NothingFound()
    return HTMLResponse(page, headers={"Cache-Control": "private, max-age=300"})


# Satisfaction.
@router.post("/helpdesk/surveys", response_model=SurveyRead, status_code=201)
def draw_survey(body: SurveyCreate, session: SessionDep, principal: Admin) -> SurveyRead:
    """Draw the month's call list (stratified by client, sized for the margin)."""
    return survey.read(session, survey.create(session, body, principal), principal)


@router.get("/helpdesk/surveys", response_model=list[SurveyRead])
def list_surveys(session: SessionDep, principal: Writers) -> list[SurveyRead]:
    return survey.list_all(session, principal)


@router.get("/helpdesk/surveys/{month}", response_model=SurveyRead)
def read_survey(month: Month, session: SessionDep, principal: Writers) -> SurveyRead:
    return survey.read(session, survey.get(session, month), principal)


@router.get("/helpdesk/surveys/{month}/calls", response_model=list[CallRead])
def call_list(
    month: Month,
    session: SessionDep,
    principal: Desk,
    status: CallStatus | None = None,
) -> list[CallRead]:
    """Who to call, in drawing order, with name, phone and language."""
    return survey.call_list(
        session, survey.get(session, month), principal, client_id=None, status=status
    )


@router.post("/helpdesk/calls/{call_id}/answer", response_model=CallOutcome, status_code=201)
def answer_call(call_id: int, body: AnswerIn, session: SessionDep, principal: Desk) -> CallOutcome:
    """The six answers (1-5, null: no answer) and a comment."""
    survey.answer(session, call_id, body, principal)
    return CallOutcome(id=call_id, status=CallStatus.ANSWERED, attempts=None)


@router.post("/helpdesk/calls/{call_id}/status", response_model=CallOutcome)
def call_status(
    call_id: int, body: CallUpdate, session: SessionDep, principal: Desk
) -> CallOutcome:
    """Declined, unreachable (to try again), or opted out (never called again)."""
    call = survey.set_status(session, call_id, body.status, principal)
    return CallOutcome(id=call_id, status=call.status, attempts=call.attempts)


@router.get("/helpdesk/surveys/{month}/results", response_model=list[ClientResult])
def survey_results(month: Month, session: SessionDep, principal: Writers) -> list[ClientResult]:
    """Per client: each question's mean score with its confidence interval."""
    return survey.results(session, survey.get(session, month), principal)


@router.get("/helpdesk/satisfaction/trend", response_model=list[ClientTrend])
def satisfaction_trend(
    session: SessionDep, principal: Writers, months: Annotated[int, Query(ge=1, le=36)] = 12
) -> list[ClientTrend]:
    return survey.trend(session, principal, months=months)


@router.post("/helpdesk/teleworkers/{teleworker_id}/opt-out", status_code=204)
def opt_out(teleworker_id: int, session: SessionDep, principal: OptOut) -> Response:
    """Never call this person for a satisfaction survey."""
    survey.opt_out(session, teleworker_id, principal)
    return Response(status_code=204)
