"""The console's one table: browser sessions, each opened with an API token.

Only a hash of the session key is stored (like tokens). The session names its token, so
revoking the token ends every session opened with it: the principal is re-read from the
token row, never copied into the session.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from core.timeutil import utcnow
from core.types import UTCDateTime


class WebSession(SQLModel, table=True):
    __tablename__ = "web_session"
    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    token_id: int = Field(foreign_key="api_token.id", index=True, ondelete="CASCADE")
    # Sent back in every form and htmx request (synchroniser token): a cross-site page
    # can make the browser send the cookie, never this value.
    csrf_token: str = Field(max_length=64)
    language: str | None = Field(default=None, max_length=8)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
