"""inventory_0001 untangles laptops that shared a slot before the unique index existed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, pool, text

from core.migrate import upgrade


def test_shared_slots_are_moved_to_free_ones_before_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0002_core")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO site (id, code, name, max_imaging_streams) VALUES (1, 'P', 'P', 8)")
        )
        conn.execute(text("INSERT INTO bench (id, site_id, code, slots) VALUES (1, 1, 'B', 3)"))
        # What the old code wrote: two laptops given slot 1 by a race, and every
        # UNEXPECTED laptop at slot 1; one more than the bench can hold.
        for i, state in enumerate(["received", "queued", "unexpected", "unexpected", "retired"]):
            conn.execute(
                text(
                    "INSERT INTO device (id, serial, vendor, mac_addresses, bench_id, slot, "
                    "state, state_changed_at, created_at, updated_at) VALUES (:id, :serial, "
                    "'Dell', '[]', 1, 1, :state, '2026-01-01', '2026-01-01', '2026-01-01')"
                ),
                {"id": i + 1, "serial": f"S{i}", "state": state},
            )
    upgrade(url)
    with engine.connect() as conn:
        slots: dict[str, int | None] = dict(
            conn.execute(text("SELECT serial, slot FROM device")).all()
        )
    engine.dispose()
    assert slots == {"S0": 1, "S1": 2, "S2": 3, "S3": None, "S4": 1}
