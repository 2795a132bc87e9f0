"""Forecast a kept lab wave again at each moment it was kept, with the model as it is
now (``python -m bench.forecast_replay FOLDER``; the folder from
``BENCH_FORECAST_KEEP=FOLDER python -m bench.forecast lab``): the error of each
forecast against the wave's actual end, without running the lab again."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from inventory.models import Device


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    explain = int(argv[1]) if len(argv) > 1 else None
    meta = json.loads((folder / "wave.json").read_text())
    os.environ.setdefault("MASTERLINE_DATA_DIR", str(folder))
    from core.db import Database
    from forecast import service

    started = datetime.fromisoformat(meta["started"])
    end = datetime.fromisoformat(meta["end"])
    span = (end - started).total_seconds()
    total = int(meta.get("laptops", 16))
    print(f"{folder}: {span:.0f} s from scan-in to the last READY")
    for ready, at in sorted(meta["snapshots"].items(), key=lambda kv: int(kv[0])):
        now = datetime.fromisoformat(at)
        db = Database(f"sqlite:///{folder}/at-{int(ready):02d}.db")
        with db.session(write=False) as s:
            computed = service.compute(s, now=now, bottlenecks=False)
        fig = computed.figures[("delivery", meta["delivery_id"])]
        p50 = datetime.fromisoformat(fig["ready_p50"]) if fig["ready_p50"] else None
        p90 = datetime.fromisoformat(fig["ready_p90"]) if fig["ready_p90"] else None
        if p50 is None or p90 is None:
            print(f"  {int(ready):>2} ready: no date")
            continue
        err = (p50 - end).total_seconds() / span
        print(
            f"  {int(ready):>2}/{total} ready ({(now - started).total_seconds():5.1f} s in): "
            f"P50 {(p50 - started).total_seconds():6.1f} s, P90 "
            f"{(p90 - started).total_seconds():6.1f} s, actual {span:.1f} s: error {err:+.1%}"
        )
        if explain is not None and int(ready) == explain:
            _explain(computed, folder, meta, started, end)
        db.dispose()
    return 0


def _explain(computed: Any, folder: Path, meta: dict[str, Any], started: Any, end: Any) -> None:
    """Print what the forecast at this moment learnt, beside each laptop's actual end
    (read from the last copy kept; the last laptop's is the wave's end)."""
    from bench import forecast_explain
    from core.db import Database
    from forecast import repository

    last = max(int(k) for k in meta["snapshots"])
    db = Database(f"sqlite:///{folder}/at-{last:02d}.db")
    with db.session(write=False) as s:
        ids = [int(i) for i in computed.index.device_ids]
        found = (s.get(Device, i) for i in ids)
        serial_of = {d.id: d.serial for d in found if d is not None and d.id is not None}
        done = repository.ready_at(s, ids)
        records = repository.step_records(s, since=started, bench_site={})
    db.dispose()
    actual = {serial_of[k]: (v - started).total_seconds() for k, v in done.items()}
    mine = [s for s in serial_of.values() if s.startswith("F")]
    for serial in mine:
        actual.setdefault(serial, (end - started).total_seconds())
    info = forecast_explain.at_point(computed, started=started, serial_of=serial_of)
    forecast_explain.report({0.0: info}, actual=actual, records=records)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
