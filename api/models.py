"""API access tokens. Only a hash of each token is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from core.principal import Role
from core.timeutil import utcnow
from core.types import UTCDateTime


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    # First characters of the token, shown in listings so a human can tell tokens apart.
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    role: Role = Field(sa_type=String(16))
    client_id: int | None = Field(
        default=None, foreign_key="client_company.id", ondelete="RESTRICT"
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
