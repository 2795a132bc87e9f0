"""inventory: large ship-notice imports staged, then published in short transactions

Revision ID: inventory_0002
Revises: inventory_0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.types

revision: str = "inventory_0002"
down_revision: str | Sequence[str] | None = "inventory_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "status IN ('staging', 'publishing')"


def upgrade() -> None:
    op.create_table(
        "intake_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lane", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("published", sa.Integer(), nullable=False),
        sa.Column("lease_until", core.types.UTCDateTime(), nullable=False),
        sa.Column("created_at", core.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_intake_job_live",
        "intake_job",
        ["lane"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_table(
        "intake_job_chunk",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("first_row", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["intake_job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "n"),
    )


def downgrade() -> None:
    op.drop_table("intake_job_chunk")
    op.drop_index("uq_intake_job_live", table_name="intake_job")
    op.drop_table("intake_job")
