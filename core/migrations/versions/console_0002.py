"""console: the dashboard's reads answered from indexes (per-hour arrivals with the
laptop's id beside the state and time; the oldest laptops of a state by when they got there)

Revision ID: console_0002
Revises: console_0001
Create Date: 2026-12-02 15:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "console_0002"
down_revision: str | Sequence[str] | None = "console_0001"
branch_labels: str | Sequence[str] | None = None
# The device columns come from the inventory's own migrations.
depends_on: str | Sequence[str] | None = ("inventory_0002",)


def upgrade() -> None:
    # Covering: a filtered chart joins the events to their laptops by device_id without
    # reading the event rows (PostgreSQL's index-only scan; SQLite's covering index).
    op.create_index(
        "ix_device_event_to_state_at_device", "device_event", ["to_state", "at", "device_id"]
    )
    op.drop_index("ix_device_event_to_state_at", table_name="device_event")
    op.create_index("ix_device_state_changed", "device", ["state", "state_changed_at"])


def downgrade() -> None:
    op.drop_index("ix_device_state_changed", table_name="device")
    op.create_index("ix_device_event_to_state_at", "device_event", ["to_state", "at"])
    op.drop_index("ix_device_event_to_state_at_device", table_name="device_event")
