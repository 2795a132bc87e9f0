"""What the ``masterline`` command imports to start (not how long it takes: that is
``bench/cli.py``). ``--help`` imports no domain; a bench-side API command imports its
own domain's CLI and the HTTP client, never the server's stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

import cli

SERVER_STACK = ("sqlmodel", "sqlalchemy", "fastapi", "starlette", "uvicorn", "alembic")
HEAVY = ("paramiko", "cryptography", "reportlab", "winrm", "ansible_runner")
DOMAINS = ("inventory", "images", "provisioning", "logistics", "lab", "api")

PROBE = """
import json, sys
sys.argv = ["masterline", *%r]
import cli
try:
    cli.main()
except SystemExit:  # every command ends so, errors included (an exit code, one line)
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _top_modules(*argv: str) -> set[str]:
    return {m.split(".")[0] for m in _modules(*argv)}


def _modules(*argv: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (list(argv),)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MASTERLINE_API_URL": "http://127.0.0.1:9", "MASTERLINE_TOKEN": "x", "PATH": ""},
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow  # starts a fresh interpreter
def test_help_imports_no_domain() -> None:
    loaded = _top_modules("--help")
    assert loaded.isdisjoint(DOMAINS + SERVER_STACK + HEAVY), loaded & set(
        DOMAINS + SERVER_STACK + HEAVY
    )


@pytest.mark.slow  # starts a fresh interpreter
def test_an_api_command_imports_no_server_stack() -> None:
    loaded = _top_modules("devices", "list")
    assert "inventory" in loaded and "httpx" in loaded  # it did run the command
    assert loaded.isdisjoint(SERVER_STACK + HEAVY), loaded & set(SERVER_STACK + HEAVY)
    # The API's schemas (pydantic models built at import) are the server's, not the CLI's.
    schemas = {m for m in _modules("devices", "list") if m.endswith(".schemas")}
    assert not schemas, schemas


@pytest.mark.slow  # starts a fresh interpreter
def test_the_probe_sees_the_server_stack() -> None:
    # A server-side command does load it: the probe can fail.
    assert "sqlalchemy" in _top_modules("tokens", "list")


def test_lazy_help_texts_match_the_commands() -> None:
    for name, entry in cli.LAZY.items():
        target = cli._resolve(entry.target)
        if isinstance(target, typer.Typer):
            actual = target.info.help
        else:
            actual = (target.__doc__ or "").strip().splitlines()[0]
        assert entry.help == actual, name


def test_every_lazy_command_loads_and_has_help() -> None:
    for name in cli.LAZY:
        command = cli.load(name)
        assert command.name == name
