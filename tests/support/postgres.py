"""A throwaway PostgreSQL cluster on 127.0.0.1 for one test session or benchmark run.

Uses Debian's server binaries (installed by ``make test`` when missing). PostgreSQL
refuses to run as root, so as root the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found; run `make system-deps`")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on which nothing answers, for as long as the block runs.

    ``free_port()`` gives the port back at once, so under xdist another test's server
    may take it before a "nobody is there" test connects. Holding it bound without
    listening makes every connection to it refused, whatever else runs.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    datadir: Path
    port: int
    _as_user: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def stop(self) -> None:
        subprocess.run(
            [
                *self._as_user,
                str(_bindir() / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_cluster() -> PostgresCluster:
    """Start a fresh cluster (fsync off: it is thrown away) and wait until it accepts."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="masterline-pg-"))
    datadir = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        os.chmod(root, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # The port is chosen just before the server binds it, and chosen again if another
    # process took it in between (a shared machine runs several suites' clusters).
    log = root / "server.log"
    for _ in range(5):
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        started = subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            timeout=90,
        )
        if started.returncode == 0:
            break
        said = log.read_text(errors="replace") if log.exists() else ""
        lost_port = "could not create any TCP/IP sockets" in said
        if not lost_port:
            started.check_returncode()
        log.write_text("")  # the next attempt's log only (the file stays the server's)
    else:
        raise RuntimeError(f"PostgreSQL found no free port to listen on ({root})")
    return PostgresCluster(datadir=datadir, port=port, _as_user=as_user)
