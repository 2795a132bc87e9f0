"""Help-desk tables: queues, the knowledge base, contacts, the satisfaction survey.

Personal data here is kept to links (``teleworker_id``) and free text (a contact's
note, a survey answer's comment); names, e-mails and phones stay in logistics'
``teleworker`` table. The retention purge (``masterline logistics purge``) cuts the
links and blanks the free text once they are older than the retention period, and at
once for a person the purge erases; counts and scores stay for the reports.

No table records which advisor took a contact or a survey answer: the results are about
the service, not about people at the desk.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, **kw)


class Queue(SQLModel, table=True):
    """Where the phone system sends a client's callers; ``client_id`` null: the centre's
    default queue (unknown or mistyped numbers)."""

    __tablename__ = "helpdesk_queue"
    id: int | None = Field(default=None, primary_key=True)
    client_id: int | None = Field(
        default=None, foreign_key="client_company.id", unique=True, ondelete="RESTRICT"
    )
    name: str = Field(max_length=64)
    phone_number: str | None = Field(default=None, max_length=40)
    hours: str | None = Field(default=None, max_length=200)
    updated_at: datetime = _ts()


# Knowledge base.
class WelcomeSection(StrEnum):
    """Where an article goes on the welcome sheet, if anywhere."""

    SIGN_IN = "sign_in"
    VPN = "vpn"
    TOOLS = "tools"


class Article(SQLModel, table=True):
    """One article in one language; its text is in ``kb_article_version`` (an edit adds
    a version). ``title``/``tags``/``version`` mirror the current version for listings."""

    __tablename__ = "kb_article"
    __table_args__ = (
        UniqueConstraint("client_id", "slug", "language", name="uq_kb_article_slug_lang"),
    )
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", index=True, ondelete="RESTRICT")
    slug: str = Field(max_length=80)
    language: str = Field(max_length=8)
    version: int = 1
    title: str = Field(max_length=200)
    tags: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    welcome_section: WelcomeSection | None = Field(default=None, sa_type=String(16))
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ArticleVersion(SQLModel, table=True):
    """An article's text as it was at one version; never updated."""

    __tablename__ = "kb_article_version"
    __table_args__ = (UniqueConstraint("article_id", "version", name="uq_kb_version"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="kb_article.id", ondelete="RESTRICT")
    version: int
    title: str = Field(max_length=200)
    body: str = Field(sa_column=Column(Text, nullable=False))
    tags: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    welcome_section: WelcomeSection | None = Field(default=None, sa_type=String(16))
    author: str = Field(max_length=128)
    created_at: datetime = _ts()


class ArticleTerm(SQLModel, table=True):
    """The search index of an article's current version: one row per normalised word,
    with its weight (title 3, tag 2, body 1, summed). Rebuilt on every edit."""

    __tablename__ = "kb_term"
    __table_args__ = (Index("ix_kb_term_client_term", "client_id", "term"),)
    article_id: int = Field(foreign_key="kb_article.id", primary_key=True, ondelete="CASCADE")
    term: str = Field(max_length=40, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    weight: int = 1


# Contacts.
class Channel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    WALK_IN = "walk_in"


class Reason(StrEnum):
    """Why people call; the categories the reports count."""

    VPN = "vpn"
    COLLABORATION = "collaboration_tool"
    SIGN_IN = "sign_in"
    HARDWARE = "hardware"
    HOME_NETWORK = "home_network"
    DELIVERY = "delivery"
    HOW_TO = "how_to"
    OTHER = "other"


class Contact(SQLModel, table=True):
    """One contact with the help desk. ``week`` (ISO, ``2026-W48``) is stored so both
    databases group by it the same way."""

    __tablename__ = "helpdesk_contact"
    __table_args__ = (
        Index("ix_helpdesk_contact_client_at", "client_id", "at"),
        Index("ix_helpdesk_contact_device", "device_id"),
        Index("ix_helpdesk_contact_teleworker", "teleworker_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    device_id: int | None = Field(default=None, foreign_key="device.id", ondelete="RESTRICT")
    teleworker_id: int | None = Field(
        default=None, foreign_key="teleworker.id", ondelete="RESTRICT"
    )
    channel: Channel = Field(sa_type=String(16))
    reason: Reason = Field(sa_type=String(32))
    item: str | None = Field(default=None, max_length=100)
    resolved_first_contact: bool = False
    article_id: int | None = Field(default=None, foreign_key="kb_article.id", ondelete="RESTRICT")
    note: str | None = Field(default=None, max_length=1000)
    at: datetime = _ts()
    week: str = Field(max_length=8)
    anonymised_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# Satisfaction survey.
class SurveyOptOut(SQLModel, table=True):
    """A person who asked not to be called for surveys."""

    __tablename__ = "survey_optout"
    teleworker_id: int = Field(foreign_key="teleworker.id", primary_key=True, ondelete="RESTRICT")
    at: datetime = _ts()


class Survey(SQLModel, table=True):
    """One month's follow-up: how it was sized and the seed it was drawn with."""

    __tablename__ = "survey"
    id: int | None = Field(default=None, primary_key=True)
    month: str = Field(max_length=7, unique=True)
    seed: str = Field(max_length=64)
    margin: float
    confidence: float
    response_rate: float
    population: int
    sample: int
    created_by: str = Field(max_length=128)
    created_at: datetime = _ts()


class SurveyStratum(SQLModel, table=True):
    """One client's part of a survey: its population and sample sizes (the finite
    population correction of its confidence intervals needs ``population``)."""

    __tablename__ = "survey_stratum"
    survey_id: int = Field(foreign_key="survey.id", primary_key=True, ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", primary_key=True, ondelete="RESTRICT")
    population: int
    target: int
    drawn: int


class CallStatus(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    DECLINED = "declined"
    UNREACHABLE = "unreachable"
    OPTED_OUT = "opted_out"


class SurveyCall(SQLModel, table=True):
    """One person to call. ``teleworker_id`` is cut by the retention purge."""

    __tablename__ = "survey_call"
    __table_args__ = (Index("ix_survey_call_survey_client", "survey_id", "client_id"),)
    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(foreign_key="survey.id", ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    teleworker_id: int | None = Field(
        default=None, foreign_key="teleworker.id", ondelete="RESTRICT"
    )
    position: int
    status: CallStatus = Field(default=CallStatus.PENDING, sa_type=String(16))
    attempts: int = 0
    updated_at: datetime = _ts()
    anonymised_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SurveyAnswer(SQLModel, table=True):
    """One person's answers, 1 to 5 (null: not answered), and a comment. No link to the
    call, the person or the advisor: only the survey and the client."""

    __tablename__ = "survey_answer"
    __table_args__ = (Index("ix_survey_answer_survey_client", "survey_id", "client_id"),)
    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(foreign_key="survey.id", ondelete="RESTRICT")
    client_id: int = Field(foreign_key="client_company.id", ondelete="RESTRICT")
    reachability: int | None = None
    welcome: int | None = None
    speed: int | None = None
    availability: int | None = None
    clarity: int | None = None
    solution: int | None = None
    comment: str | None = Field(default=None, max_length=2000)
    # The day only: an exact time would let someone match an answer to the call made
    # just before it, and so to a person.
    answered_on: date
    anonymised_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


QUESTIONS: tuple[str, ...] = (
    "reachability",
    "welcome",
    "speed",
    "availability",
    "clarity",
    "solution",
)
"""The six questions, in the order they are asked."""
