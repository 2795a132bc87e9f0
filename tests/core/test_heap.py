"""The API process and an import's child keep their long-lived objects out of the
garbage collector's full passes (``core.heap``): a full pass over the API's start-up
objects paused every request for 0.1-1 s, the tail of scan-in during a large import
(docs/benchmarks.md)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from core.child import keep_to_the_end, run_with_database
from core.db import Database
from core.heap import ONE_SHOT_GEN2_THRESHOLD

REPO = Path(__file__).resolve().parents[2]

_SERVER_START = """
import gc, json, sys
from fastapi.testclient import TestClient
from api.app import create_app
from core.db import Database

db = Database(sys.argv[1])
before = gc.get_freeze_count()
with TestClient(create_app(db)) as client:  # runs the start-up, as uvicorn does
    client.get("/openapi.json")
    print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                      "walked": len(gc.get_objects()), "threshold": gc.get_threshold()}))
db.dispose()
"""


def test_a_started_api_leaves_its_start_up_objects_out_of_full_collections(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "heap.db"
    path.write_bytes(sqlite_template.read_bytes())
    out = subprocess.run(
        [sys.executable, "-c", _SERVER_START, f"sqlite:///{path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"MASTERLINE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0
    # The modules, routes, ORM and pydantic tables, and the OpenAPI schema: frozen. What
    # a full collection still walks is what was made since, a small part of it.
    assert seen["frozen"] > 100_000, seen
    assert seen["walked"] < seen["frozen"] // 4, seen
    # A long-lived process keeps its full collections (Python's defaults): what a
    # one-shot child may keep to its end would grow with the server's life here.
    assert seen["threshold"] == [700, 10, 10], seen


def _frozen_in_child(_db: Database, n: int) -> tuple[int, int]:
    at_start = gc.get_freeze_count()
    kept = [[i] for i in range(n)]  # an import's planned rows, say (lists: tracked)
    keep_to_the_end()
    frozen = gc.get_freeze_count() - at_start
    del kept
    return at_start, frozen


def test_the_import_child_freezes_what_it_keeps_to_the_end(db: Database) -> None:
    at_start, frozen = run_with_database(db, _frozen_in_child, 50_000)
    assert at_start > 0  # its modules, once it was set up
    assert frozen > 50_000  # the rows and the list holding them


def test_outside_a_child_nothing_is_kept_out_of_the_collector() -> None:
    before = gc.get_freeze_count()
    keep_to_the_end()  # a long-lived process must not freeze a request's data
    assert gc.get_freeze_count() == before


def _thresholds_in_child(_db: Database) -> tuple[int, int, int]:
    return gc.get_threshold()


def test_the_import_child_makes_no_automatic_full_collection(db: Database) -> None:
    """Set before the child's work runs (its plan is built under it); the young
    generations keep their thresholds."""
    young, middle, full = run_with_database(db, _thresholds_in_child)
    assert full == ONE_SHOT_GEN2_THRESHOLD
    assert (young, middle) == (700, 10)  # Python's defaults
