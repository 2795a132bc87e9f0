"""Help-desk API shapes. Every string and list has a limit.

What an advisor sees of a person (``PersonRead``): name, e-mail and language, to greet
them and check who is calling; never the postal address or the phone. The survey's call
list (``CallRead``) adds the phone, because calling is its purpose, and drops the e-mail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.values import INT64_MAX, Int64
from helpdesk.models import CallStatus, Channel, Reason, WelcomeSection
from logistics.models import Language

Slug = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")]
TagValue = Annotated[str, Field(min_length=1, max_length=100)]
MONTH_PATTERN = r"^2\d{3}-(0[1-9]|1[0-2])$"
"""A month of this millennium: YYYY-MM."""
Month = Annotated[str, Field(pattern=MONTH_PATTERN, examples=["2026-11"])]
Score = Annotated[int, Field(ge=1, le=5)]


# Queues and routing.
class QueueIn(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="What the phone system routes to (a queue or extension name).",
        examples=["acme-support"],
    )
    phone_number: str | None = Field(
        default=None, max_length=40, description="The help-desk number printed on sheets."
    )
    hours: str | None = Field(default=None, max_length=200, examples=["lun.-ven. 8h-19h"])


class QueueRead(BaseModel):
    client_code: str | None = Field(description="Null: the centre's default queue.")
    name: str
    phone_number: str | None
    hours: str | None


class RouteAnswer(BaseModel):
    queue: str
    known: bool = Field(description="False: the number matched no laptop (default queue).")


# Look-up.
class LookupRequest(BaseModel):
    """In a POST body: the identifier may be an e-mail address, which must not end up in
    access logs."""

    q: str = Field(
        min_length=1,
        max_length=254,
        description="Serial, asset tag, hostname, the teleworker's e-mail, the carrier's "
        "tracking number or the help code.",
    )
    language: Language = Field(default=Language.FR, description="Of the articles listed.")


class ClientRef(BaseModel):
    id: int
    code: str
    name: str


class ToolRead(BaseModel):
    name: str
    package: str | None = Field(description="Package id, or installer path on the laptop.")
    source: str | None = Field(description="`package` (winget/apt), `msi` or `deb`.")
    version: str | None = Field(description="The installer file's catalogue version, if any.")
    verified: bool | None = Field(description="Found by the READY gate; null: not checked.")


class StagedRead(BaseModel):
    """What the laptop was given and what the gate verified."""

    recorded: bool = Field(
        description="True: as staged (the run's record). False: the client's configuration "
        "as it is now (the laptop was staged before runs recorded it, or not staged yet)."
    )
    run_id: int | None
    finished_at: datetime | None
    image: str | None = Field(description="`name version` of the master image.")
    os_family: str | None
    hostname: str | None
    vpn_kind: str | None
    vpn_name: str | None
    vpn_verified: bool | None
    tools: list[ToolRead]


class ShipmentBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    carrier: str
    tracking: str
    status: str
    dispatched_at: datetime
    delivered_at: datetime | None
    returned_at: datetime | None


class PersonRead(BaseModel):
    id: int
    name: str
    email: str
    language: str
    erased: bool
    survey_opted_out: bool = Field(
        default=False, description="Asked never to be called for a satisfaction survey."
    )


class EventBrief(BaseModel):
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    reason: str | None


class ArticleBrief(BaseModel):
    id: int
    slug: str
    language: str
    title: str
    version: int


class ContactBrief(BaseModel):
    id: int
    at: datetime
    channel: str
    reason: str
    item: str | None
    resolved_first_contact: bool


class LaptopCard(BaseModel):
    """Everything an advisor needs about one laptop, in one answer."""

    device_id: int
    matched_by: list[str] = Field(description="Which identifier kinds matched the query.")
    serial: str
    vendor: str
    model: str | None
    asset_tag: str | None
    help_code: str
    client: ClientRef | None
    state: str
    state_changed_at: datetime
    staged: StagedRead
    shipment: ShipmentBrief | None
    teleworker: PersonRead | None
    events: list[EventBrief] = Field(description="The latest lifecycle events, newest first.")
    queue: QueueRead
    articles: list[ArticleBrief] = Field(description="Articles that apply to this laptop.")
    contacts: list[ContactBrief] = Field(description="Its latest help-desk contacts.")


class LookupResult(BaseModel):
    items: list[LaptopCard]


# Knowledge base.
class ArticleTags(BaseModel):
    """What an article applies to. An empty list: any value. A laptop matches when every
    non-empty list holds its value (any of its tools, for ``tools``)."""

    vpn: list[Annotated[str, Field(pattern=r"^(wireguard|openvpn|ikev2|vendor)$")]] = Field(
        default_factory=list, max_length=4
    )
    tools: list[TagValue] = Field(default_factory=list, max_length=50, examples=[["Teams"]])
    models: list[TagValue] = Field(
        default_factory=list, max_length=50, examples=[["Dell Latitude 5440"]]
    )
    os: list[Annotated[str, Field(pattern=r"^(windows|linux)$")]] = Field(
        default_factory=list, max_length=2
    )


class ArticleCreate(BaseModel):
    client_code: str | None = Field(
        default=None, max_length=32, description="Required unless the token names a client."
    )
    slug: Slug = Field(description="Shared by an article's translations.", examples=["vpn-first"])
    language: Language
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(
        min_length=1, max_length=100_000, description="Markdown; raw HTML shown as text."
    )
    tags: ArticleTags = Field(default_factory=ArticleTags)
    welcome_section: WelcomeSection | None = Field(
        default=None, description="Print it on welcome sheets, in this section."
    )


class ArticleEdit(BaseModel):
    based_on: int = Field(
        ge=1, le=INT64_MAX, description="The version this edit starts from (409 if stale)."
    )
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=100_000)
    tags: ArticleTags = Field(default_factory=ArticleTags)
    welcome_section: WelcomeSection | None = None


class ArticleRead(BaseModel):
    id: int
    client_code: str
    slug: str
    language: str
    version: int
    title: str
    tags: ArticleTags
    welcome_section: WelcomeSection | None
    body: str = Field(description="The Markdown source of this version.")
    html: str = Field(description="Rendered safely: no raw HTML, no script links.")
    author: str
    created_at: datetime = Field(description="When this version was written.")
    archived: bool


class VersionBrief(BaseModel):
    version: int
    title: str
    author: str
    created_at: datetime


class SearchHit(ArticleBrief):
    client_code: str
    score: int
    snippet: str


# Contacts.
class ContactCreate(BaseModel):
    device_id: Int64 | None = Field(default=None, description="The caller's laptop, if known.")
    client_code: str | None = Field(
        default=None,
        max_length=32,
        description="When no laptop is named (and the token names none).",
    )
    channel: Channel
    reason: Reason
    item: str | None = Field(
        default=None,
        max_length=100,
        description="The configuration item concerned: `vpn:<kind>`, `tool:<name>`, "
        "`model:<vendor model>`, `os:<family>`.",
        examples=["tool:Microsoft Teams"],
    )
    resolved_first_contact: bool = False
    article_id: Int64 | None = Field(default=None, description="The article that helped.")
    note: str | None = Field(default=None, max_length=1000)
    at: datetime | None = Field(default=None, description="Default: now.")

    @field_validator("item")
    @classmethod
    def _item(cls, v: str | None) -> str | None:
        if v is None:
            return v
        kind, sep, value = v.partition(":")
        if not sep or kind not in ("vpn", "tool", "model", "os") or not value.strip():
            raise ValueError("item is vpn:<kind>, tool:<name>, model:<vendor model> or os:<family>")
        return f"{kind}:{value.strip()}"


class ContactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    client_id: int
    device_id: int | None
    teleworker_id: int | None
    channel: str
    reason: str
    item: str | None
    resolved_first_contact: bool
    article_id: int | None
    note: str | None
    at: datetime
    week: str


class ReasonRow(BaseModel):
    week: str
    client_code: str
    model: str | None
    reason: str
    item: str | None
    contacts: int
    resolved_first_contact: int


class WaveRow(BaseModel):
    """Contacts in the first ``days`` after delivery, per 100 laptops, for one wave (the
    laptops of one vendor delivery)."""

    delivery_id: int
    order_reference: str
    client_code: str
    delivered: int = Field(description="Laptops of the wave delivered to a teleworker.")
    window_closed: int = Field(description="Of those, delivered at least `days` days ago.")
    contacts: int = Field(description="Contacts about those laptops within their window.")
    per_100: float | None = Field(description="contacts x 100 / window_closed.")


# Satisfaction survey.
class SurveyCreate(BaseModel):
    month: Month = Field(description="The month whose recipients and callers are sampled.")
    margin: float = Field(default=0.10, gt=0.0, le=0.5, description="Wanted margin of error.")
    confidence: float = Field(default=0.95, description="0.90, 0.95 or 0.99.")
    response_rate: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Expected share who answer; inflates the list."
    )
    seed: str | None = Field(
        default=None, max_length=64, description="Default: a random seed, recorded."
    )

    @field_validator("confidence")
    @classmethod
    def _confidence(cls, v: float) -> float:
        if v not in (0.90, 0.95, 0.99):
            raise ValueError("confidence is 0.90, 0.95 or 0.99")
        return v


class StratumRead(BaseModel):
    client_code: str
    population: int
    target: int
    drawn: int


class SurveyRead(BaseModel):
    id: int
    month: str
    seed: str
    margin: float
    confidence: float
    response_rate: float
    population: int
    sample: int
    created_at: datetime
    strata: list[StratumRead]


class CallRead(BaseModel):
    id: int
    position: int
    client_code: str
    status: CallStatus
    attempts: int
    name: str | None = Field(description="Null once the retention purge cut the link.")
    phone: str | None
    language: str | None


class CallOutcome(BaseModel):
    id: int
    status: CallStatus
    attempts: int | None


class CallUpdate(BaseModel):
    status: CallStatus = Field(description="`declined`, `unreachable` or `opted_out`.")

    @field_validator("status")
    @classmethod
    def _not_answered(cls, v: CallStatus) -> CallStatus:
        if v in (CallStatus.ANSWERED, CallStatus.PENDING):
            raise ValueError("record answers with POST …/answer")
        return v


class AnswerIn(BaseModel):
    """The six questions, 1 (very poor) to 5 (very good); null: no answer."""

    reachability: Score | None = Field(description="Was the help desk easy to reach?")
    welcome: Score | None = Field(description="How were you welcomed?")
    speed: Score | None = Field(description="How quickly was your request handled?")
    availability: Score | None = Field(description="Was the advisor available for you?")
    clarity: Score | None = Field(description="Were the explanations clear?")
    solution: Score | None = Field(description="Did the solution work?")
    comment: str | None = Field(default=None, max_length=2000)


class QuestionResult(BaseModel):
    question: str
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class ClientResult(BaseModel):
    client_code: str
    month: str
    population: int
    answers: int
    questions: list[QuestionResult]
    overall: QuestionResult = Field(description="The mean of a person's answered questions.")


class TrendPoint(BaseModel):
    month: str
    answers: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None


class ClientTrend(BaseModel):
    client_code: str
    points: list[TrendPoint]


class PurgeReport(BaseModel):
    contacts: int
    calls: int
    answers: int
