"""inventory: one laptop per bench slot (partial unique index over the slot-holding
states); UNEXPECTED laptops now hold their slot

Before this revision PostgreSQL could hand one slot to several laptops under concurrent
scans, and every UNEXPECTED laptop was recorded at slot 1. Such rows are moved first:
the oldest occupant of a slot keeps it, the others get the bench's free slots in id
order; a laptop left without a free slot keeps its bench with no slot (listed in the
migration's output for a technician).

Revision ID: inventory_0001
Revises: 0002_core
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0001"
down_revision: str | Sequence[str] | None = "0002_core"
branch_labels: str | Sequence[str] | None = ("inventory",)
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: a migration must not change when the code's list does.
_HELD = (
    "state IN ('configuring', 'failed_configuring', 'failed_imaging', 'failed_verifying', "
    "'imaging', 'queued', 'ready', 'received', 'unexpected', 'verifying')"
)

_HOLDERS = (
    "SELECT id, serial, bench_id, slot FROM device WHERE state IN ('configuring', "
    "'failed_configuring', 'failed_imaging', 'failed_verifying', 'imaging', 'queued', "
    "'ready', 'received', 'unexpected', 'verifying') "
    "AND bench_id IS NOT NULL AND slot IS NOT NULL ORDER BY bench_id, id"
)


def _untangle_slots(conn: sa.Connection) -> None:
    benches = dict(conn.execute(sa.text("SELECT id, slots FROM bench")).all())
    rows = conn.execute(sa.text(_HOLDERS)).all()
    taken: dict[int, set[int]] = {}
    movers: list[tuple[int, str, int]] = []
    for device_id, serial, bench_id, slot in rows:
        held = taken.setdefault(bench_id, set())
        if slot in held:
            movers.append((device_id, serial, bench_id))
        else:
            held.add(slot)
    for device_id, serial, bench_id in movers:
        held = taken[bench_id]
        free = next((s for s in range(1, int(benches.get(bench_id, 0)) + 1) if s not in held), None)
        if free is not None:
            held.add(free)
        else:
            print(f"inventory_0001: {serial} (device {device_id}) has no free slot on its bench")
        conn.execute(
            sa.text("UPDATE device SET slot = :slot WHERE id = :id"),
            {"slot": free, "id": device_id},
        )


def upgrade() -> None:
    _untangle_slots(op.get_bind())
    op.create_index(
        "uq_device_bench_slot_held",
        "device",
        ["bench_id", "slot"],
        unique=True,
        sqlite_where=sa.text(_HELD),
        postgresql_where=sa.text(_HELD),
    )


def downgrade() -> None:
    op.drop_index("uq_device_bench_slot_held", table_name="device")
