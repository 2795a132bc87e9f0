"""The help desk's look-up: one search box (serial, asset tag, hostname, e-mail, tracking
number, help code) → the laptop's card, and recording a contact from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from api.deps import SessionDep
from console.deps import PageAllow, Viewer, is_htmx
from console.i18n import N_
from console.nav import NavItem, register
from console.pages._kit import go, page, page_router
from core import helpcode
from core.errors import InvalidInput
from core.principal import Role
from helpdesk import lookup, service, survey
from helpdesk.errors import NothingFound
from helpdesk.models import Channel, Reason
from helpdesk.schemas import ContactCreate, LaptopCard
from inventory import service as inventory
from logistics.models import Language

router = page_router()
DESK = (Role.ADMIN, Role.HELPDESK)
DeskViewer = Annotated[Viewer, Depends(PageAllow(*DESK))]
NAV = register(NavItem("helpdesk", N_("Help desk"), "/console/helpdesk", frozenset(DESK), 70))

CHANNELS = {
    Channel.PHONE: N_("phone"),
    Channel.EMAIL: N_("e-mail"),
    Channel.CHAT: N_("chat"),
    Channel.WALK_IN: N_("walk-in"),
}
REASONS = {
    Reason.VPN: N_("VPN"),
    Reason.COLLABORATION: N_("collaboration tool"),
    Reason.SIGN_IN: N_("signing in"),
    Reason.HARDWARE: N_("hardware"),
    Reason.HOME_NETWORK: N_("home network"),
    Reason.DELIVERY: N_("delivery"),
    Reason.HOW_TO: N_("how to"),
    Reason.OTHER: N_("other"),
}
MATCHED = {
    "serial": N_("serial"),
    "asset_tag": N_("asset tag"),
    "hostname": N_("hostname"),
    "email": N_("e-mail"),
    "tracking": N_("tracking number"),
    "help_code": N_("help code"),
}


def items_of(card: LaptopCard) -> list[str]:
    """The configuration items a contact about this laptop may concern (what the
    reports group by), from what it was given."""
    out = []
    if card.staged.vpn_kind:
        out.append(f"vpn:{card.staged.vpn_kind}")
    out += [f"tool:{t.name}" for t in card.staged.tools]
    if card.model:
        out.append(f"model:{card.vendor} {card.model}")
    if card.staged.os_family:
        out.append(f"os:{card.staged.os_family}")
    return list(dict.fromkeys(i[:100] for i in out))


def _cards(
    request: Request,
    viewer: Viewer,
    cards: list[LaptopCard],
    *,
    q: str,
    template: str,
    recorded: int | None = None,
) -> HTMLResponse:
    return page(
        request,
        template,
        viewer=viewer,
        q=q,
        cards=cards,
        card=cards[0] if cards else None,
        items={c.device_id: items_of(c) for c in cards},
        channels=CHANNELS,
        reasons=REASONS,
        matched_labels=MATCHED,
        searched=bool(q),
        recorded=recorded,
        can_print=viewer.principal.role is Role.ADMIN,
        pretty_code=helpcode.pretty,
    )


def _language(viewer: Viewer) -> str:
    """Articles in the advisor's language (both exist: French and English)."""
    return viewer.language if viewer.language in set(Language) else Language.FR.value


def _card_of(session: Session, device_id: int, viewer: Viewer) -> list[LaptopCard]:
    device = inventory.get_device(session, device_id, viewer.principal)
    return lookup.cards(session, [device], viewer.principal, {device_id: []}, _language(viewer))


@router.get("/console/helpdesk")
def home(request: Request, viewer: DeskViewer) -> HTMLResponse:
    return _cards(request, viewer, [], q="", template="helpdesk/lookup.html")


@router.post("/console/helpdesk/lookup")
def find(
    request: Request,
    session: SessionDep,
    viewer: DeskViewer,
    q: Annotated[str, Form(min_length=1, max_length=254)],
) -> HTMLResponse:
    """A POST: the identifier may be an e-mail address, which must not land in access
    logs (as the API's ``POST /helpdesk/lookup``)."""
    try:
        cards = lookup.lookup(session, q, viewer.principal, language=_language(viewer))
    except NothingFound:
        cards = []
    template = "helpdesk/_cards.html" if is_htmx(request) else "helpdesk/lookup.html"
    return _cards(request, viewer, cards, q=q.strip(), template=template)


@router.get("/console/helpdesk/laptops/{device_id}")
def card(device_id: int, request: Request, session: SessionDep, viewer: DeskViewer) -> HTMLResponse:
    """One laptop's card (where a recorded contact returns to)."""
    cards = _card_of(session, device_id, viewer)
    return _cards(request, viewer, cards, q=cards[0].serial, template="helpdesk/lookup.html")


@router.post("/console/helpdesk/laptops/{device_id}/contacts")
def record_contact(
    device_id: int,
    request: Request,
    session: SessionDep,
    viewer: DeskViewer,
    channel: Annotated[Channel, Form()],
    reason: Annotated[Reason, Form()],
    item: Annotated[str | None, Form(max_length=100)] = None,
    resolved: Annotated[bool, Form()] = False,
    article_id: Annotated[int | None, Form(ge=1, le=2**62)] = None,
    note: Annotated[str | None, Form(max_length=1000)] = None,
) -> Response:
    """Record a contact about this laptop (no advisor is recorded)."""
    inventory.get_device(session, device_id, viewer.principal)  # another company's: 404 first
    try:
        body = ContactCreate(
            device_id=device_id,
            channel=channel,
            reason=reason,
            item=item or None,
            resolved_first_contact=resolved,
            article_id=article_id,
            note=(note or "").strip() or None,
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidInput(f"{first['loc'][-1]}: {first['msg']}") from e
    contact = service.record_contact(session, body, viewer.principal)
    if not is_htmx(request):
        return RedirectResponse(f"/console/helpdesk/laptops/{device_id}", status_code=303)
    # The card again, its contacts list holding the new one.
    cards = _card_of(session, device_id, viewer)
    return _cards(request, viewer, cards, q="", template="helpdesk/_card.html", recorded=contact.id)


@router.post("/console/helpdesk/laptops/{device_id}/survey-opt-out")
def survey_opt_out(
    device_id: int, request: Request, session: SessionDep, viewer: DeskViewer
) -> Response:
    """The caller asks never to be called for a satisfaction survey: recorded for the
    teleworker this laptop was sent to (the API's ``POST
    /helpdesk/teleworkers/{id}/opt-out``)."""
    cards = _card_of(session, device_id, viewer)  # another company's: 404 first
    person = cards[0].teleworker
    if person is None or person.erased:
        raise InvalidInput("this laptop was sent to nobody the survey could call")
    survey.opt_out(session, person.id, viewer.principal)
    return go(request, f"/console/helpdesk/laptops/{device_id}")
