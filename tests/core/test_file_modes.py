"""Local state is owner-only: the data directory, the SQLite file and its WAL/SHM, the
secret key and the image store are created 0700/0600 whatever the umask, and narrowed
at start when found wider. Checked by stat, on real files made by the real code."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core import vault
from core.db import Database
from core.files import private_dir
from core.settings import get_settings
from images.store import Store

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive usual umask (what a shell or service manager may give)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


_MAIN = "import sys; from cli import main; sys.argv[0] = 'masterline'; main()"


def _start(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTERLINE_")} | {
        "MASTERLINE_DATA_DIR": str(data_dir)
    }
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow  # runs masterline in a subprocess
def test_a_new_installation_is_private(
    tmp_path: Path, open_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "var"
    done = _start(data, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert mode(data) == 0o700
    assert mode(data / "masterline.db") == 0o600
    # The key is generated on first use (the first secret encrypted).
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(data))
    monkeypatch.delenv("MASTERLINE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert vault.decrypt(vault.encrypt("a VPN key")) == "a VPN key"
    finally:
        get_settings.cache_clear()
    assert mode(data / "secret.key") == 0o600

    store = Store(data / "images")
    store.ensure()
    temp = store.temp_path("put")
    temp.write_bytes(b"image bytes")
    final = store.publish(temp, "ab" * 32)
    for folder in (store.root, store.sha_dir, store.tmp_dir, final.parent):
        assert mode(folder) == 0o700, folder
    assert mode(final) == 0o600
    assert mode(private_dir(tmp_path / "deep" / "er")) == 0o700


def test_the_wal_and_shm_files_are_private_too(tmp_path: Path, open_umask: None) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        with db.session() as s:
            s.execute(text("CREATE TABLE t (x INTEGER)"))
            s.execute(text("INSERT INTO t VALUES (1)"))
        with db.engine.connect() as conn:  # WAL and SHM exist while a connection is open
            conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
            for name in ("fresh.db", "fresh.db-wal", "fresh.db-shm"):
                assert mode(tmp_path / name) == 0o600, name
    finally:
        db.dispose()


@pytest.mark.slow  # runs masterline in a subprocess
def test_wider_modes_found_at_start_are_narrowed(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "var"
    assert _start(data, "db", "upgrade").returncode == 0
    (data / "secret.key").write_text("an old key")
    images = data / "images" / "sha256" / "ab"
    images.mkdir(parents=True)
    (images / ("ab" * 32)).write_bytes(b"image")
    for name in ("masterline.db-wal", "masterline.db-shm"):
        (data / name).write_bytes(b"")
    wide = [data, data / "images", data / "images" / "sha256", images]
    files = [
        data / "masterline.db",
        data / "masterline.db-wal",
        data / "masterline.db-shm",
        data / "secret.key",
        images / ("ab" * 32),
    ]
    for folder in wide:
        os.chmod(folder, 0o755)  # noqa: S103  (the wide mode the start must narrow)
    for f in files:
        os.chmod(f, 0o644)
    done = _start(data, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert {str(p): oct(mode(p)) for p in wide} == {str(p): "0o700" for p in wide}
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
