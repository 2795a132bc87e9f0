"""Run the API in a process of its own (``python -m tests.support.serve URL PORT``), for
tests that must kill it for real or read what it consumed from ``/proc``.

``--block-publish before|after MARKER``: the image store's ``publish`` appends to MARKER and
then blocks forever, before or after its rename, so that a test can SIGKILL the server
at that very point of an upload's final publish. Test-only: production code has no
such hook.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from core.db import Database


def _block_publish(when: str, marker: Path) -> None:
    from images.store import Store

    original = Store.publish

    def publish(self: Store, temp: Path, sha256: str) -> Any:
        if when == "after":
            original(self, temp, sha256)
        with marker.open("a") as f:  # one character per publish that reached this point
            f.write("x")
        threading.Event().wait()  # until killed

    Store.publish = publish  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    url, port = argv[1], int(argv[2])
    if len(argv) > 3 and argv[3] == "--block-publish":
        _block_publish(argv[4], Path(argv[5]))
    # A VM test runs this inside its network namespace, on the bench bridge's address
    # (reachable from nowhere else); everything else stays on 127.0.0.1.
    host = os.environ.get("MASTERLINE_TEST_SERVE_HOST", "127.0.0.1")
    uvicorn.run(create_app(Database(url)), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv)
