"""teleworker.language: the welcome sheet's language (fr by default)

Revision ID: logistics_0002
Revises: logistics_0001
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "logistics_0002"
down_revision: str | Sequence[str] | None = "logistics_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("teleworker", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), nullable=False, server_default="fr")
        )


def downgrade() -> None:
    with op.batch_alter_table("teleworker", schema=None) as batch_op:
        batch_op.drop_column("language")
