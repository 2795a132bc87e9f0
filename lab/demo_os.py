"""The demo Linux image a VM laptop is imaged with: a raw disk that really boots from
itself, built from Debian packages with the PE's helpers (``boot.pe``: apt download into
the same cache, ``dpkg-deb -x``, the ELF library walk, the module order).

The disk (MBR, BIOS):

* sector 0: syslinux's MBR code (``syslinux-common``) and two partitions;
* partition 1, FAT16, active: syslinux (installed into the FAT image with mtools, no
  mount), Debian's kernel and a small initramfs (busybox and the disk, filesystem and
  NIC modules) that finds the root partition, mounts it and hands over;
* partition 2, ext4 labelled ``masterline-os``, written by ``mke2fs -d`` from a
  directory (no mount, no loop device): busybox, dropbear (SSH server), python3 and its
  standard library (what Ansible's modules need), an ``/sbin/init`` that brings the NICs
  up by DHCP and starts dropbear with the host key the PE wrote into this partition.

The image ships no SSH host key and no login key: the PE writes both after the stream
(``provisioning/bootcontrol/registered.py``), so every laptop has its own host key, and
the worker knows it from a channel it already trusts (docs/boot.md). The OS has no
package manager: the configure step runs in marker mode on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from boot.pe import debian, rootfs, service
from boot.pe.cpio import CharDev, Dir, File, Node, Symlink
from boot.pe.errors import PeBuildError

OS_PACKAGES = ("busybox-static", "dropbear-bin", "python3-minimal", "libpython3-stdlib")
LOADER_PACKAGES = ("syslinux", "syslinux-common")
"""Run or copied on the build host only: the FAT installer and the MBR code."""
INITRD_MODULES = (
    "crc32c_generic",  # ext4's metadata checksums; a soft dependency modinfo does not list
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ahci",
    "ata_piix",
    "sd_mod",
    "e1000",
    "e1000e",
    "ext4",
    # The VM's entropy source: without one, dropbear in a TCG guest blocks for minutes
    # ("Waiting for kernel randomness") before it answers (a laptop has RDRAND, a TPM).
    "virtio_rng",
)
ROOT_LABEL = "masterline-os"
FS_UUID = "6d6c2d6f-732d-4465-8d6f-000000000001"  # fixed: same inputs, same bytes
FS_HASH_SEED = "6d6c2d6f-732d-4465-8d6f-000000000002"
OS_MARKER = "etc/masterline/os-release"
"""Present on the demo OS's root: the initramfs looks for it, the PE's seal step too."""
SECTOR = 512
FIRST_LBA = 2048
BOOT_MIB = 16
ROOT_MIB = 64  # ~43 MiB used: room for configuration, little for verify to read back
MiB = 1024 * 1024
RAW = "demo-os.raw"

SYSLINUX_CFG = """DEFAULT os
PROMPT 0
TIMEOUT 0
LABEL os
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=tty0 console=ttyS0 quiet panic=10
"""

INITRD_INIT = r"""#!/bin/sh
# The demo OS's initramfs: load the drivers, find the root partition (the one holding
# /etc/masterline/os-release), mount it read-write and hand over to its /sbin/init.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
KVER=$(uname -r)
while read -r module; do
    insmod "/usr/lib/modules/$KVER/$module" 2>/dev/null
done </etc/modules.order
mkdir -p /newroot
tries=0
while [ $tries -lt 200 ]; do
    for part in /sys/class/block/*; do
        [ -f "$part/partition" ] || continue
        if mount -t ext4 "/dev/${part##*/}" /newroot 2>/dev/null; then
            [ -f /newroot/etc/masterline/os-release ] && break 2
            umount /newroot
        fi
    done
    sleep 0.1
    tries=$((tries + 1))
done
if ! [ -f /newroot/etc/masterline/os-release ]; then
    echo "MASTERLINE-OS no root partition found"
    exec sh
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""

OS_INIT = r"""#!/bin/sh
# The demo OS's PID 1: a host name, every NIC up by DHCP, the SSH server with the host
# key the PE wrote into this disk (none: no SSH, said on the console).
export PATH=/usr/sbin:/usr/bin HOME=/root PYTHONUTF8=1
say() { echo "MASTERLINE-OS $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
exec </dev/console >/dev/console 2>&1
hostname "$(cat /etc/hostname 2>/dev/null || echo masterline-demo)"
ip link set lo up
for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    ip link set "$name" up
    udhcpc -b -t 20 -T 2 -i "$name" -p "/run/udhcpc.$name.pid" \
        -s /usr/share/udhcpc/default.script >/dev/null 2>&1
done
KEY=/etc/dropbear/dropbear_ed25519_host_key
if [ -f "$KEY" ]; then
    dropbear -r "$KEY" -s -g -p 22 -P /run/dropbear.pid
    say "up $(hostname) ssh $(dropbearkey -y -f "$KEY" | grep '^ssh-ed25519 ' | cut -d' ' -f1,2)"
else
    say "up $(hostname) no host key: not imaged by Masterline, no SSH"
fi
while true; do sleep 3600; done
"""

ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    "etc/hostname": "masterline-demo\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/profile": "export PATH=/usr/sbin:/usr/bin PYTHONUTF8=1\n",
}


def resolve() -> list[debian.Package]:
    names = debian.closure(
        [service.KERNEL_PACKAGE, *OS_PACKAGES, *LOADER_PACKAGES], follow=service.follow
    )
    return debian.candidates(names)


def inputs_key(packages: list[debian.Package]) -> str:
    """Same packages and same builder: same image (a test caches the build by it)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for p in packages:
        digest.update(f"{p.filename}\n".encode())
    digest.update((Path(rootfs.__file__).parent / "files" / "udhcpc.script").read_bytes())
    return digest.hexdigest()


def _busybox(tree: rootfs.Tree, staging: Path) -> None:
    busybox = rootfs.find(staging, rootfs.BIN_DIRS, "busybox")
    if busybox is None:
        raise PeBuildError("busybox-static's static busybox is missing")
    tree.add("usr/bin/busybox", File(busybox, 0o755))
    for applet in rootfs.busybox_applets(busybox):
        base = os.path.basename(applet)
        where = "usr/sbin" if "sbin/" in applet else "usr/bin"
        if f"usr/bin/{base}" not in tree and f"usr/sbin/{base}" not in tree:
            tree.add(f"{where}/{base}", Symlink("/usr/bin/busybox"))


def _base(tree: rootfs.Tree) -> None:
    for d in ("dev", "proc", "sys", "run", "mnt", "var", "etc"):
        tree.add(d, Dir())
    tree.add("tmp", Dir(0o1777))
    tree.add("root", Dir(0o700))
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        tree.add(link, Symlink(target))
    tree.add("lib64", Symlink("usr/lib64"))
    tree.add(
        "usr/lib64/ld-linux-x86-64.so.2", Symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    )


def root_tree(staging: Path, *, release: str) -> rootfs.Tree:
    """The installed system: busybox, dropbear, python3, /sbin/init."""
    tree = rootfs.Tree()
    _base(tree)
    tree.add("var/run", Symlink("../run"))
    elves: list[tuple[str, Path]] = []
    for name in ("dropbear", "dropbearkey"):
        path = rootfs.find(staging, rootfs.BIN_DIRS, name)
        if path is None:
            raise PeBuildError(f"{name} is missing from the demo OS packages")
        tree.add(f"usr/sbin/{name}", File(path, 0o755))
        elves.append((name, path))
    _busybox(tree, staging)
    elves += rootfs.add_python(tree, staging)
    rootfs.add_libraries(tree, staging, elves)
    for etc_path, text in ETC.items():
        tree.add(etc_path, File(text.encode(), 0o600 if etc_path == "etc/shadow" else 0o644))
    tree.add("etc/dropbear", Dir(0o700))
    tree.add(OS_MARKER, File(f"{release}\n".encode()))
    tree.add("usr/sbin/init", File(OS_INIT.encode(), 0o755))
    tree.add("usr/share/udhcpc/default.script", File(rootfs.pe_file("udhcpc.script"), 0o755))
    return tree


def initrd_tree(staging: Path, *, kernel_version: str) -> rootfs.Tree:
    tree = rootfs.Tree()
    _base(tree)
    tree.add("dev/console", CharDev(5, 1))
    _busybox(tree, staging)
    kernel_dir = staging / "lib/modules" / kernel_version / "kernel"
    modules = rootfs.module_order(kernel_dir, INITRD_MODULES)
    for rel in modules:
        tree.add(f"usr/lib/modules/{kernel_version}/{rel}", File(kernel_dir.parent / rel))
    tree.add("etc/modules.order", File("".join(f"{m}\n" for m in modules).encode()))
    tree.add("init", File(INITRD_INIT.encode(), 0o755))
    return tree


def materialise(nodes: dict[str, Node], into: Path) -> None:
    """The tree as real files under ``into`` (for ``mke2fs -d``); device nodes are left
    out: the OS mounts devtmpfs."""
    for path, node in sorted(nodes.items()):
        dest = into / path
        if isinstance(node, Dir):
            dest.mkdir(parents=True, exist_ok=True)
            os.chmod(dest, node.mode)
        elif isinstance(node, Symlink):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(node.target, dest)
        elif isinstance(node, File):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(node.source, bytes):
                dest.write_bytes(node.source)
            else:
                shutil.copyfile(node.source, dest)
            os.chmod(dest, node.mode)


def _tool(*cmd: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1", **(env or {})},
    )  # fmt: skip
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["?"])[-1]
        raise PeBuildError(f"{os.path.basename(cmd[0])} failed: {last}")


def make_root_fs(tree: rootfs.Tree, out: Path, *, epoch: int) -> None:
    """An ext4 image of ``ROOT_MIB`` filled from the tree, every file owned by root
    (through fakeroot when the builder is not root: ownership is what sshd checks)."""
    if shutil.which("mke2fs") is None:
        raise PeBuildError("mke2fs is missing on the build host (Debian package e2fsprogs)")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".root-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        materialise(tree.nodes, root)
        mkfs = [
            "mke2fs", "-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-m", "0",
            "-U", FS_UUID, "-E", f"hash_seed={FS_HASH_SEED}",
            "-d", str(root), str(out), f"{ROOT_MIB}M",
        ]  # fmt: skip
        env = {"E2FSPROGS_FAKE_TIME": str(epoch)} if epoch else {}
        if os.geteuid() == 0:
            _tool("chown", "-R", "-h", "0:0", str(root))
            _tool(*mkfs, env=env)
        else:
            if shutil.which("fakeroot") is None:
                raise PeBuildError("not root and no fakeroot: the image's files must be root's")
            script = 'chown -R -h 0:0 "$1" && shift && exec "$@"'
            _tool("fakeroot", "sh", "-c", script, "sh", str(root), *mkfs, env=env)


def make_boot_fs(staging: Path, out: Path, *, vmlinuz: Path, initrd: Path) -> None:
    """The FAT16 boot partition: syslinux (installed by its mtools installer), the kernel,
    the initramfs and syslinux.cfg."""
    with out.open("wb") as f:
        f.truncate(BOOT_MIB * MiB)
    _tool("mformat", "-i", str(out), "-v", "MLBOOT", "-N", "6d6c0001", "::")
    installer = staging / "usr/bin/syslinux"
    if not installer.is_file():
        raise PeBuildError("the syslinux package has no usr/bin/syslinux")
    _tool(str(installer), "--install", str(out))
    cfg = out.parent / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG)
    for src, name in ((vmlinuz, "vmlinuz"), (initrd, "initrd.img"), (cfg, "syslinux.cfg")):
        _tool("mcopy", "-i", str(out), "-o", str(src), f"::/{name}")


def mbr_entry(*, active: bool, kind: int, first: int, sectors: int) -> bytes:
    """One partition entry, LBA only (CHS fields at their 'use LBA' maximum)."""
    return struct.pack(
        "<B3sB3sII", 0x80 if active else 0, b"\xfe\xff\xff", kind, b"\xfe\xff\xff", first, sectors
    )


def write_disk(mbr_code: bytes, boot_fs: Path, root_fs: Path, out: Path) -> None:
    boot_sectors = boot_fs.stat().st_size // SECTOR
    root_first = FIRST_LBA + boot_sectors
    root_sectors = root_fs.stat().st_size // SECTOR
    mbr = bytearray(SECTOR)
    mbr[:440] = mbr_code[:440]
    mbr[440:444] = b"MLOS"  # disk signature
    mbr[446:462] = mbr_entry(active=True, kind=0x06, first=FIRST_LBA, sectors=boot_sectors)
    mbr[462:478] = mbr_entry(active=False, kind=0x83, first=root_first, sectors=root_sectors)
    mbr[510:512] = b"\x55\xaa"
    with out.open("wb") as f:
        f.write(mbr)
        for first, part in ((FIRST_LBA, boot_fs), (root_first, root_fs)):
            f.seek(first * SECTOR)
            with part.open("rb") as src:
                shutil.copyfileobj(src, f, MiB)
        f.truncate((root_first + root_sectors) * SECTOR)


def build(out_dir: Path, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """``out_dir/demo-os.raw`` and ``demo-os.json`` (what it is made of, its sha256)."""
    cache = cache_dir or service.PeSettings().cache_dir
    epoch = service.source_date_epoch()
    packages = resolve()
    kernels = [p for p in packages if p.name.startswith("linux-image-") and p.name[12].isdigit()]
    if len(kernels) != 1:
        raise PeBuildError(f"expected one kernel package, apt resolved {len(kernels)}")
    kernel_version = kernels[0].name.removeprefix("linux-image-")
    debs = debian.download(packages, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as tmp:
        staging = Path(tmp) / "pkgs"
        debian.unpack(debs.values(), staging)
        release = f"masterline demo OS, kernel {kernel_version}"
        initrd = Path(tmp) / "initrd.img"
        from boot.pe import cpio

        cpio.write_gzip(
            initrd_tree(staging, kernel_version=kernel_version).nodes, initrd, mtime=epoch
        )
        boot_fs, root_fs = Path(tmp) / "boot.fat", Path(tmp) / "root.ext4"
        vmlinuz = staging / "boot" / f"vmlinuz-{kernel_version}"
        make_boot_fs(staging, boot_fs, vmlinuz=vmlinuz, initrd=initrd)
        make_root_fs(root_tree(staging, release=release), root_fs, epoch=epoch)
        mbr_code = (staging / "usr/lib/syslinux/mbr/mbr.bin").read_bytes()
        write_disk(mbr_code, boot_fs, root_fs, out_dir / RAW)
    raw = out_dir / RAW
    return {
        "name": "masterline-demo-os",
        "kernel_version": kernel_version,
        "release": release,
        "raw": RAW,
        "raw_size": raw.stat().st_size,
        "raw_sha256": service.sha256_file(raw),
        "inputs_sha256": inputs_key(packages),
        "packages": [{"name": p.name, "version": p.version} for p in packages],
    }
