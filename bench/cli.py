"""CLI start-up: ``masterline --help`` and a bench-side API command against ``python -c
pass``, each the median of several runs in fresh processes, measured in the same run.

``masterline devices list`` talks to a stub HTTP server in this process that answers an
empty page at once, so what is measured is the command's own start-up and exit.

Run: ``.venv/bin/python -m bench.cli`` (or ``make bench``).
"""

from __future__ import annotations

import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

RUNS = 9
TARGET_S = 0.3
BIN = Path(sys.executable).parent


class _EmptyPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"items": [], "next_cursor": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _median(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "MASTERLINE_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "MASTERLINE_TOKEN": "mlt_bench",
        "COLUMNS": "100",
    }
    try:
        base = _median([sys.executable, "-c", "pass"], env)
        rows = [
            ("python -c pass", base),
            ("masterline --help", _median([str(BIN / "masterline"), "--help"], env)),
            ("masterline devices list", _median([str(BIN / "masterline"), "devices", "list"], env)),
        ]
    finally:
        server.shutdown()
    print(f"{'command':<28}{'median s':>10}{'x python':>10}")
    for name, took in rows:
        print(f"{name:<28}{took:>10.3f}{took / base:>10.1f}")
    worst = max(t for _, t in rows[1:])
    print(f"target: <= {TARGET_S} s each ({'met' if worst <= TARGET_S else 'NOT met'} here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
