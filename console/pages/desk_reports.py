"""Help-desk reports: reasons per week, contacts per 100 laptops in their first 10 days
at home per wave, and the monthly satisfaction survey (the sample, its call list, the
results with their intervals). Tables here; spreadsheets from the API's CSV routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from api.deps import SessionDep
from console.deps import PageAllow, Viewer
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import done, go, page, page_router
from core.errors import InvalidInput
from core.principal import Role
from core.timeutil import utcnow
from helpdesk import reports, service, survey
from helpdesk.models import CallStatus
from helpdesk.schemas import MONTH_PATTERN, AnswerIn, QueueIn, SurveyCreate
from inventory import service as inventory

router = page_router()
READERS = (Role.ADMIN, Role.HELPDESK, Role.DSI)
"""Who reads the reports and the survey's results (as the API)."""
DESK = (Role.ADMIN, Role.HELPDESK)
"""Who makes the satisfaction calls (the call list shows names and phones)."""
ReportViewer = Annotated[Viewer, Depends(PageAllow(*READERS))]
DeskViewer = Annotated[Viewer, Depends(PageAllow(*DESK))]
AdminViewer = Annotated[Viewer, Depends(PageAllow(Role.ADMIN))]
NAV = register(
    NavItem(
        "desk-reports", N_("Help-desk reports"), "/console/desk-reports", frozenset(READERS), 72
    )
)
WEEKS = 12

QUESTIONS = {
    "reachability": N_("Reachability: was the help desk easy to reach?"),
    "welcome": N_("Welcome: how were you welcomed?"),
    "speed": N_("Speed: how quickly was your request handled?"),
    "availability": N_("Availability: was the advisor available for you?"),
    "clarity": N_("Clarity: were the explanations clear?"),
    "solution": N_("Solution: did the solution work?"),
    "overall": N_("Overall"),
}
CALL_STATUSES = {
    CallStatus.PENDING: N_("to call"),
    CallStatus.ANSWERED: N_("answered"),
    CallStatus.DECLINED: N_("declined"),
    CallStatus.UNREACHABLE: N_("unreachable (call again)"),
    CallStatus.OPTED_OUT: N_("opted out"),
}
Score = Annotated[int | None, Form(ge=1, le=5)]


@router.get("/console/desk-reports")
def home(request: Request, session: SessionDep, viewer: ReportViewer) -> HTMLResponse:
    end = utcnow()
    return page(
        request,
        "helpdesk/reports.html",
        viewer=viewer,
        weeks=WEEKS,
        reasons=reports.reasons(
            session, viewer.principal, since=end - timedelta(weeks=WEEKS), until=end
        ),
        waves=reports.waves(session, viewer.principal),
        days=reports.FIRST_DAYS,
        surveys=list(reversed(survey.list_all(session, viewer.principal))),
        trend=survey.trend(session, viewer.principal),
        queues=service.list_queues(session, viewer.principal)
        if viewer.principal.role in DESK
        else [],
        clients=inventory.list_clients(session, viewer.principal)
        if viewer.principal.role is Role.ADMIN
        else [],
        admin=viewer.principal.role is Role.ADMIN,
        last_month=(end.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"),
    )


@router.post("/console/desk-reports/queues")
def set_queue(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    name: Annotated[str, Form(min_length=1, max_length=64)],
    client_code: Annotated[str | None, Form(max_length=32)] = None,
    phone_number: Annotated[str | None, Form(max_length=40)] = None,
    hours: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    """A client's queue (or, without a client, the centre's default): what the phone
    system routes to, and the number and hours printed on welcome sheets."""
    try:
        body = QueueIn(name=name.strip(), phone_number=phone_number or None, hours=hours or None)
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e
    row = service.set_queue(session, client_code or None, body, viewer.principal)
    return done(
        request,
        viewer,
        N_("Queue %(name)s saved."),
        fallback="/console/desk-reports",
        name=row.name,
    )


@router.post("/console/desk-reports/surveys")
def draw_survey(
    request: Request,
    session: SessionDep,
    viewer: AdminViewer,
    month: Annotated[str, Form(pattern=MONTH_PATTERN)],
    margin_pct: Annotated[float, Form(gt=0, le=50)] = 10.0,
    confidence_pct: Annotated[int, Form()] = 95,
    response_rate_pct: Annotated[float, Form(gt=0, le=100)] = 100.0,
    seed: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Draw a month's call list (stratified by client, sized for the margin; the seed
    is recorded so the draw can be checked)."""
    try:
        body = SurveyCreate(
            month=month,
            margin=margin_pct / 100,
            confidence=confidence_pct / 100,
            response_rate=response_rate_pct / 100,
            seed=seed or None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e
    survey.create(session, body, viewer.principal)
    return go(request, f"/console/desk-reports/surveys/{month}")


@router.get("/console/desk-reports/surveys/{month}")
def survey_page(
    request: Request,
    session: SessionDep,
    viewer: ReportViewer,
    month: Annotated[str, Path(pattern=MONTH_PATTERN)],
) -> HTMLResponse:
    """A month's sample (strata, seed), its results and, for advisors, the call list."""
    drawn = survey.get(session, month)
    desk = viewer.principal.role in DESK
    return page(
        request,
        "helpdesk/survey.html",
        viewer=viewer,
        survey=survey.read(session, drawn, viewer.principal),
        results=survey.results(session, drawn, viewer.principal),
        calls=survey.call_list(session, drawn, viewer.principal, client_id=None, status=None)
        if desk
        else [],
        desk=desk,
        questions=QUESTIONS,
        call_statuses=CALL_STATUSES,
        open_statuses=(CallStatus.PENDING, CallStatus.UNREACHABLE),
    )


@router.post("/console/desk-reports/calls/{call_id}/answer")
def answer(
    call_id: int,
    request: Request,
    session: SessionDep,
    viewer: DeskViewer,
    reachability: Score = None,
    welcome: Score = None,
    speed: Score = None,
    availability: Score = None,
    clarity: Score = None,
    solution: Score = None,
    comment: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """The six answers (1-5, or none). No advisor is recorded with them."""
    body = AnswerIn(
        reachability=reachability,
        welcome=welcome,
        speed=speed,
        availability=availability,
        clarity=clarity,
        solution=solution,
        comment=(comment or "").strip() or None,
    )
    survey.answer(session, call_id, body, viewer.principal)
    return done(request, viewer, N_("Answers recorded."), fallback="/console/desk-reports")


@router.post("/console/desk-reports/calls/{call_id}/status")
def call_status(
    call_id: int,
    request: Request,
    session: SessionDep,
    viewer: DeskViewer,
    status: Annotated[CallStatus, Form()],
) -> Response:
    """Declined, unreachable (stays on the list), or opted out (never called again)."""
    if status in (CallStatus.ANSWERED, CallStatus.PENDING):
        raise InvalidInput("record answers with the form")
    survey.set_status(session, call_id, status, viewer.principal)
    return done(
        request,
        viewer,
        N_("Call marked %(status)s."),
        fallback="/console/desk-reports",
        status=str(status),
    )
