"""Private files and folders: local state is readable by its owner only.

The data directory holds teleworkers' personal data (the SQLite file and its WAL), the
key that decrypts every secret at rest (``secret.key``) and the clients' master images.
Folders are created 0700 and files 0600 whatever the process umask, and at every start
(``secure_local_state``, from ``core.db.get_database``) anything found wider is
narrowed, so an installation made before this rule, or a file restored from a backup
with 0644, is fixed too.

SQLite creates its ``-wal`` and ``-shm`` files with the mode of the database file, so a
database file created 0600 keeps them 0600; existing ones are narrowed here as well.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from core.settings import Settings

log = logging.getLogger("masterline.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def narrow(path: Path) -> bool:
    """Take group and other permissions away from ``path`` (a file or folder, not
    followed if a symlink); returns whether it changed anything. Missing is fine."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode) or not mode & 0o077:
        return False
    os.chmod(path, stat.S_IMODE(mode) & ~0o077)
    return True


def private_dir(path: Path) -> Path:
    """``path`` and its missing parents created 0700 (an existing ``path`` narrowed)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    narrow(path)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty with 0600 if missing, narrowed if it exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        narrow(path)
    return path


def narrow_tree(root: Path) -> int:
    """Narrow ``root`` and everything under it; returns how many entries changed."""
    if not root.is_dir():
        return 0
    changed = int(narrow(root))
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            changed += narrow(Path(folder) / name)
    return changed


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for PostgreSQL or an in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def secure_sqlite_file(path: Path) -> None:
    """The database file created 0600 before SQLite opens it (its WAL and SHM then
    inherit that mode); an existing one and its companions narrowed."""
    if not path.parent.exists():
        private_dir(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        narrow(path.with_name(path.name + suffix))


def secure_local_state(settings: Settings) -> None:
    """At the start of a server-side process: the data directory 0700, the database
    file, the secret key and the image store private (narrowed if found wider)."""
    data_dir = settings.data_dir
    private_dir(data_dir)
    db_file = sqlite_path(settings.resolved_database_url)
    if db_file is not None:
        secure_sqlite_file(db_file)
    narrow(data_dir / "secret.key")
    changed = narrow_tree(settings.resolved_image_store_dir)
    if changed:
        log.warning("image store: narrowed the permissions of %d entries to owner-only", changed)
