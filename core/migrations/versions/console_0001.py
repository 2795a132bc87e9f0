"""console: browser sessions; indexes behind the live board and the throughput chart

Revision ID: console_0001
Revises: 0001_core
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.types

revision: str = "console_0001"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = ("console",)
# The run index needs the provisioning tables.
depends_on: str | Sequence[str] | None = ("provisioning_0001",)


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("created_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", core.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_key_hash"), ["key_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_web_session_token_id"), ["token_id"], unique=False)
    op.create_index("ix_device_event_to_state_at", "device_event", ["to_state", "at"])
    op.create_index("ix_provisioning_run_updated_at", "provisioning_run", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_provisioning_run_updated_at", table_name="provisioning_run")
    op.drop_index("ix_device_event_to_state_at", table_name="device_event")
    with op.batch_alter_table("web_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_token_id"))
        batch_op.drop_index(batch_op.f("ix_web_session_key_hash"))
    op.drop_table("web_session")
