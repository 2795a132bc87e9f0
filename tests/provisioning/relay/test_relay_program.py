"""The PE's relay program on its own: a bad configuration is one error line and an
exit code, never a traceback; and it runs on the standard library alone."""

from __future__ import annotations

import json
import subprocess

from provisioning.relay.wave import RELAY_SCRIPT
from tests.provisioning.relay.conftest import PYTHON


def _run(first_line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-S", str(RELAY_SCRIPT)],
        input=first_line + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_configuration_is_one_line() -> None:
    for bad in ("not json", "{}", json.dumps({"wave": "w", "member": "m0", "manifest": {}})):
        done = _run(bad)
        assert done.returncode == 2
        assert done.stderr == ""
        (line,) = done.stdout.splitlines()
        assert json.loads(line)["event"] == "error"
        assert "Traceback" not in done.stdout


def test_standard_library_only() -> None:
    probe = (
        # As ``python3 relay.py`` runs it: its folder (relay_wire.py) on the path.
        f"import sys, runpy; sys.path.insert(0, {str(RELAY_SCRIPT.parent)!r});"
        "before = set(sys.modules);"
        f"runpy.run_path({str(RELAY_SCRIPT)!r}, run_name='relay');"
        "extra = sorted(m.split('.')[0] for m in set(sys.modules) - before);"
        "print([m for m in extra if m not in sys.stdlib_module_names])"
    )
    done = subprocess.run(
        [PYTHON, "-S", "-c", probe], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['relay_wire']"  # its own part, standard library only
