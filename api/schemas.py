"""API shapes for tokens and the principal."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core.principal import Role


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    client_code: str | None = Field(default=None, max_length=32)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    role: Role
    client_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="Shown once; only its hash is stored.")


class PrincipalRead(BaseModel):
    token_id: int
    name: str
    role: Role
    client_id: int | None
