"""The installed Linux's SSH host key, known to the worker with no trust on first use
(docs/boot.md, "The installed system's host key").

After the stream, the registered PE mounts the installed Linux (``MOUNT_SCRIPT``); before
the reboot it generates a host key *inside that system* (``SEAL_SCRIPT``: the private half
is written on the laptop's disk and never leaves it), copies the worker's login key (the
one the registration handed to the PE) into root's ``authorized_keys`` there, and prints
the public half. That output comes back over the SSH session to the PE, which is pinned
to the host key the PE gave in its authenticated registration: so the public key is as
trustworthy as the registration itself (MAAS and curtin do the same over their own
authenticated channel). The reboot step records it in the run's context in the database,
keyed by the PE boot (``as_record``, ``base.SEALED_OS``), so that any worker pins it for
the configure and gate steps (``from_record``, ``pinned_os_known_hosts``).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from core.settings import get_settings
from provisioning.bootcontrol.base import JsonValue
from provisioning.errors import CommandFailed
from provisioning.imaging.identity import last_line
from provisioning.transports.base import Transport

MOUNTED = r"""mounted() { awk -v t="$1" '$2 == t { f = 1 } END { exit !f }' /proc/mounts; }
"""
"""``mounted DIR``: whether DIR is a mount point (busybox has no ``mountpoint``)."""

MOUNT_SCRIPT = (
    MOUNTED
    + r"""R="${MASTERLINE_PE_ROOT:-}"; T="$R/mnt/target"; D="$1"
mkdir -p "$T"
if mounted "$T"; then echo "mounted already"; exit 0; fi
# The kernel learns the partition table the stream just wrote.
blockdev --rereadpt "$R/dev/$D" 2>/dev/null
tries=0
while [ $tries -lt 40 ]; do
    for p in "$R/sys/block/$D"/"$D"*; do
        [ -f "$p/partition" ] || continue
        if mount -t ext4 "$R/dev/${p##*/}" "$T" 2>/dev/null; then
            if [ -d "$T/etc" ] && [ -d "$T/usr" ]; then echo "mounted ${p##*/}"; exit 0; fi
            umount "$T"
        fi
    done
    tries=$((tries + 1))
    sleep 0.25
done
echo "no linux root"
"""
)
"""Mount the installed Linux's root partition of the disk ``$1`` at the offline root:
the first ext4 partition holding ``/etc`` and ``/usr``. Prints ``mounted <part>`` or
``no linux root`` (another OS: nothing to mount)."""

SEAL_SCRIPT = (
    MOUNTED
    + r"""set -e
R="${MASTERLINE_PE_ROOT:-}"; T="$R/mnt/target"
if ! mounted "$T"; then echo "not mounted"; exit 0; fi
mkdir -p "$T/etc/dropbear" "$T/root/.ssh"
chmod 700 "$T/root" "$T/root/.ssh" "$T/etc/dropbear"
KEY="$T/etc/dropbear/dropbear_ed25519_host_key"
rm -f "$KEY"
dropbearkey -t ed25519 -f "$KEY" >/dev/null 2>&1
if [ -x "$T/usr/sbin/sshd" ]; then
    # An OpenSSH system: the same key in its own format.
    mkdir -p "$T/etc/ssh"
    dropbearconvert dropbear openssh "$KEY" "$T/etc/ssh/ssh_host_ed25519_key" >/dev/null 2>&1
    chmod 600 "$T/etc/ssh/ssh_host_ed25519_key"
    dropbearkey -y -f "$KEY" | grep '^ssh-ed25519 ' | cut -d' ' -f1,2 \
        >"$T/etc/ssh/ssh_host_ed25519_key.pub"
fi
cp "$R/root/.ssh/authorized_keys" "$T/root/.ssh/authorized_keys"
chmod 600 "$T/root/.ssh/authorized_keys"
chown -R 0:0 "$T/root/.ssh"
echo "hostkey $(dropbearkey -y -f "$KEY" | grep '^ssh-ed25519 ' | cut -d' ' -f1,2)"
# apt-get, not dpkg: busybox, which small images carry, has a dpkg applet.
if [ -x "$T/usr/bin/apt-get" ]; then echo "packages apt"; else echo "packages none"; fi
sync
umount "$T"
"""
)
"""Host key and login key into the mounted installed system, then unmount it. Prints
``hostkey ssh-ed25519 AAAA…`` and ``packages apt|none`` (a system without a package
manager is configured in marker mode), or ``not mounted``."""

_KEY = re.compile(r"^hostkey (ssh-ed25519 [A-Za-z0-9+/=]{40,200})$", re.MULTILINE)


@dataclass(frozen=True)
class SealedOs:
    host_key: str
    """``ssh-ed25519 AAAA…``: the installed system's host key, generated on the laptop."""
    package_manager: bool

    def known_hosts_line(self, address: str, port: int) -> str:
        name = address if port == 22 else f"[{address}]:{port}"
        return f"{name} {self.host_key}\n"


def mount(transport: Transport, disk: str, *, timeout: float) -> bool:
    """Mount the installed Linux of ``disk``; False when it holds none.
    :raises CommandFailed: the script failed."""
    res = transport.run(f"sh -s {disk}", timeout=timeout, stdin=MOUNT_SCRIPT.encode())
    if not res.ok:
        raise CommandFailed(f"mounting the installed system failed: {last_line(res.stderr)}")
    return res.stdout.strip().startswith("mounted")


def seal(transport: Transport, *, timeout: float) -> SealedOs | None:
    """Generate the installed system's host key on the laptop and read its public half;
    None when nothing is mounted (not a Linux this PE can seal).
    :raises CommandFailed: the script failed or printed no key."""
    res = transport.run("sh -s", timeout=timeout, stdin=SEAL_SCRIPT.encode())
    if not res.ok:
        raise CommandFailed(f"sealing the installed system failed: {last_line(res.stderr)}")
    if "not mounted" in res.stdout:
        return None
    found = _KEY.search(res.stdout)
    if found is None:
        raise CommandFailed("sealing the installed system printed no host key")
    return SealedOs(found.group(1), "packages apt" in res.stdout)


def as_record(boot_id: int, sealed: SealedOs) -> dict[str, JsonValue]:
    """What the run's context keeps of a seal (``SEALED_OS``), keyed by the PE boot that
    made it: a seal of an older boot of the laptop is never taken for this one's."""
    return {
        "pe_boot": boot_id,
        "host_key": sealed.host_key,
        "package_manager": sealed.package_manager,
    }


def from_record(record: object, boot_id: int) -> SealedOs | None:
    """The seal ``record`` (a run context's ``SEALED_OS`` value) holds for the PE boot
    ``boot_id``; None when it holds none, another boot's, or a malformed one."""
    if not isinstance(record, dict) or record.get("pe_boot") != boot_id:
        return None
    key = record.get("host_key")
    if not isinstance(key, str) or _KEY.fullmatch(f"hostkey {key}") is None:
        return None
    return SealedOs(key, bool(record.get("package_manager")))


def pinned_os_known_hosts(boot_id: int, sealed: SealedOs, address: str, port: int) -> Path:
    """A known_hosts file holding the installed system's key and nothing else, written
    atomically from the database's record: this worker's own copy, made again by any
    worker that needs it (its data directory holds nothing it could not rebuild)."""
    return known_hosts_file(f"os-of-boot-{boot_id}", sealed.known_hosts_line(address, port))


def known_hosts_file(name: str, line: str) -> Path:
    """``name`` in the worker's pinned known_hosts folder, holding ``line`` and nothing
    else; rewritten atomically only when it differs (threads of one worker and workers
    of one host may write it at once)."""
    directory = get_settings().data_dir / "pe-known-hosts"
    path = directory / name
    try:
        if path.read_text() == line:
            return path
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(line)
    os.replace(tmp, path)
    return path
