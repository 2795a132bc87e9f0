"""The API server's import graph stays light: the image-upload memory target (peak RSS
≤ 100 MB, docs/benchmarks.md) holds only while the heavy libraries that a few routes
need are imported where they are used, not when the app is built."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts fresh interpreters

# Each of these costs several MB of resident memory in every server process.
HEAVY = (
    "paramiko",
    "nacl",
    "reportlab",
    "PIL",
    "cryptography",
    "httpx",
    "rich",
    "pygments",
    "winrm",
    "ansible_runner",
)

PROBE = """
import json, sys
from api.app import create_app
create_app()
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in %r)))
"""


def test_building_the_app_imports_none_of_the_heavy_libraries() -> None:
    # A fresh interpreter: this test process has long imported all of them.
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"imported when the API app is built: {loaded}"


def test_the_probe_sees_a_heavy_import() -> None:
    # The probe itself must be able to fail: importing a route module that needs
    # paramiko at call time must show up once the library is actually loaded.
    probe = PROBE.replace("create_app()", "create_app(); import paramiko")
    out = subprocess.run(
        [sys.executable, "-c", probe % (HEAVY,)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "paramiko" in json.loads(out.stdout.strip().splitlines()[-1])
