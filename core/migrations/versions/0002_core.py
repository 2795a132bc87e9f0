"""device (bench_id, slot) index: a bench's occupied slots without reading every
laptop in a slot-holding state

Revision ID: 0002_core
Revises: 0001_core
Create Date: 2026-11-24 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_core"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_device_bench_slot", "device", ["bench_id", "slot"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_device_bench_slot", table_name="device")
