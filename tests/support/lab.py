"""Pytest fixtures and small clients for the device lab (lab/lab.py).

``lab``: a fresh :class:`lab.lab.Lab` in the test's tmp dir, always ``down()`` afterwards
(every sshd, session and the lab daemon gone). Use it from any test package with
``from tests.support.lab import lab  # noqa: F401`` or via a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import pytest

from lab.lab import Lab, LabLaptop


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    # Not keep_running: if the test process is killed, the lab daemon stops the lab.
    the_lab = Lab(root=tmp_path / "lab")
    try:
        yield the_lab
    finally:
        the_lab.down()


@contextmanager
def ssh_client(laptop: LabLaptop, *, timeout: float = 10.0) -> Iterator[paramiko.SSHClient]:
    """A paramiko client connected to a lab laptop, its host key verified (no auto-add)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(laptop.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            laptop.host,
            port=laptop.ssh_port,
            username=laptop.ssh_user,
            key_filename=str(laptop.client_key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        yield client
    finally:
        client.close()


def ssh_run(
    laptop: LabLaptop, command: str, stdin: bytes = b"", *, timeout: float = 30.0
) -> tuple[int, bytes, bytes]:
    """Run one command over paramiko; returns (exit status, stdout, stderr)."""
    with ssh_client(laptop) as client:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        try:
            for i in range(0, len(stdin), 256 * 1024):
                channel.sendall(stdin[i : i + 256 * 1024])
            channel.shutdown_write()
        except OSError:
            # The command exited before reading everything (e.g. dd on a full disk): its
            # stderr and exit status still tell why.
            pass
        out = channel.makefile("rb").read()
        err = channel.makefile_stderr("rb").read()
        return channel.recv_exit_status(), out, err


def ssh_cli_argv(laptop: LabLaptop) -> list[str]:
    """``ssh`` (OpenSSH client) arguments reaching a lab laptop with its pinned host key."""
    return [
        "ssh",
        "-p",
        str(laptop.ssh_port),
        "-i",
        str(laptop.client_key_path),
        "-o",
        f"UserKnownHostsFile={laptop.known_hosts_path}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-c",
        "aes128-gcm@openssh.com",
        f"{laptop.ssh_user}@{laptop.host}",
    ]
