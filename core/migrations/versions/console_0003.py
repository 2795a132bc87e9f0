"""console: the laptop's client, delivery and site copied onto its events, every existing
event backfilled, and the chart's index over them (a filtered chart joins no laptop)

The backfill writes what ``inventory.lifecycle`` now writes with each event: the
laptop's client and delivery, and its bench's site. For the events already there it can
only read the laptop as it is now, so two kinds of events get NULL as the writer would
have given them: an attached laptop's events before its first ``attach`` (an UNEXPECTED
laptop belonged to no client until then), and events into EXPECTED (a laptop has no
bench until it is scanned in). Neither kind is counted by the chart (it counts moves
into RECEIVED and READY), so the chart reads the same figures as before.

Batches of ``BATCH`` event ids, one ``UPDATE`` each with correlated look-ups: the same
SQL on SQLite and PostgreSQL, no statement holding the whole table's new versions at
once on PostgreSQL, and progress printed for a large history.

Revision ID: console_0003
Revises: console_0002
Create Date: 2026-12-02 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "console_0003"
down_revision: str | Sequence[str] | None = "console_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 20_000

_BACKFILL = sa.text(
    "UPDATE device_event SET "
    "client_id = (SELECT d.client_id FROM device d WHERE d.id = device_event.device_id), "
    "delivery_id = (SELECT d.delivery_id FROM device d WHERE d.id = device_event.device_id), "
    "site_id = CASE WHEN device_event.to_state = 'expected' THEN NULL ELSE "
    "(SELECT b.site_id FROM device d JOIN bench b ON b.id = d.bench_id "
    "WHERE d.id = device_event.device_id) END "
    "WHERE device_event.id >= :low AND device_event.id < :high"
)

# Frozen text, as every migration's: the event's name is what the code wrote then.
_BEFORE_ATTACH = sa.text(
    "UPDATE device_event SET client_id = NULL, delivery_id = NULL "
    "WHERE device_id IN (SELECT a.device_id FROM device_event a WHERE a.event = 'attach') "
    "AND id < (SELECT MIN(a.id) FROM device_event a "
    "WHERE a.device_id = device_event.device_id AND a.event = 'attach')"
)


def _backfill(conn: sa.Connection) -> None:
    low, high = conn.execute(sa.text("SELECT MIN(id), MAX(id) FROM device_event")).one()
    if low is None:
        return
    total = int(high) - int(low) + 1
    for start in range(int(low), int(high) + 1, BATCH):
        conn.execute(_BACKFILL, {"low": start, "high": start + BATCH})
        done = min(start + BATCH, int(high) + 1) - int(low)
        if total > BATCH:
            print(f"console_0003: {done:,} of {total:,} event ids backfilled")
    conn.execute(_BEFORE_ATTACH)


def upgrade() -> None:
    op.add_column("device_event", sa.Column("client_id", sa.Integer(), nullable=True))
    op.add_column("device_event", sa.Column("delivery_id", sa.Integer(), nullable=True))
    op.add_column("device_event", sa.Column("site_id", sa.Integer(), nullable=True))
    # Filled before the index exists: one index build, not one update per row.
    _backfill(op.get_bind())
    op.create_index(
        "ix_device_event_to_state_at_scope",
        "device_event",
        ["to_state", "at", "client_id", "delivery_id", "site_id"],
    )
    op.drop_index("ix_device_event_to_state_at_device", table_name="device_event")


def downgrade() -> None:
    op.create_index(
        "ix_device_event_to_state_at_device", "device_event", ["to_state", "at", "device_id"]
    )
    op.drop_index("ix_device_event_to_state_at_scope", table_name="device_event")
    op.drop_column("device_event", "site_id")
    op.drop_column("device_event", "delivery_id")
    op.drop_column("device_event", "client_id")
