"""The PE's file tree, assembled from unpacked Debian packages (``debian.unpack``):
busybox and its applets, the SSH server, the tools imaging and inventory run, Python with
its standard library, the kernel modules a laptop needs, the agent and ``/init``. Only
what is listed is taken, plus the shared libraries it needs (read from the ELF files,
so a missing one fails the build rather than the boot)."""

from __future__ import annotations

import os
import subprocess
from importlib import resources
from pathlib import Path

from boot.pe import elf
from boot.pe.cpio import CharDev, Dir, File, Node, Symlink
from boot.pe.errors import PeBuildError

# Tools the agent and the worker run in the PE (busybox provides the rest: sh, ip, dd,
# sha256sum, mount, udhcpc, ...). A name busybox also has is the real tool here.
BINARIES = (
    "dropbear",
    "dropbearkey",
    "dropbearconvert",
    "zstd",
    "lsblk",
    "blkid",
    "wipefs",
    "blkdiscard",
    "sfdisk",
    "nvme",
    "smartctl",
    "dmidecode",
)
# Drivers, as module names: wired NICs (Intel, Realtek, Broadcom), the USB adapters and
# docks laptops use, the VM's virtio/e1000, NVMe, SATA, USB disks, and efivarfs for the
# Secure Boot state, ext4 for the installed Linux. Modules built into Debian's kernel are skipped.
MODULES = (
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "r8169",
    "tg3",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "xhci_pci",
    "ehci_pci",
    "r8152",
    "ax88179_178a",
    "cdc_ether",
    "cdc_ncm",
    "nvme",
    "ahci",
    "sd_mod",
    "usb_storage",
    "uas",
    "efivarfs",
    "virtio_rng",
    # The installed Linux's root, mounted after the stream to write its offline settings
    # and its SSH host key (crc32c: ext4's checksums, a dependency modinfo leaves out).
    "crc32c_generic",
    "ext4",
)
# Parts of the standard library the agent never imports (tests, GUIs, build tools).
PYTHON_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "distutils", "__pycache__", "venv", "turtle.py",
}  # fmt: skip
PYTHON_SKIP_PREFIX = ("config-", "_test", "xx", "_ctypes_test", "_curses", "_dbm", "_gdbm")
PYTHON_SKIP_EXT = ("readline.", "nis.", "ossaudiodev.", "audioop.", "_sqlite3.", "_tkinter.")
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64")
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
LIBDIR = "usr/lib/x86_64-linux-gnu"

ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    "etc/hosts": "127.0.0.1 localhost masterline-pe\n",
    "etc/profile": "export PATH=/usr/sbin:/usr/bin PYTHONUTF8=1\nexport PS1='masterline-pe# '\n",
}


class Tree:
    """Paths (relative to /) to nodes; parents are added as directories."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, path: str, node: Node) -> None:
        parent = os.path.dirname(path)
        if parent and parent not in self.nodes:
            self.add(parent, Dir())
        self.nodes[path] = node

    def __contains__(self, path: str) -> bool:
        return path in self.nodes


def resolve(root: Path, rel: str) -> Path | None:
    """``rel`` under ``root``, following symlinks inside ``root`` (an absolute link in a
    package points into the PE, never at the build host)."""
    path = root / rel
    for _ in range(40):
        if path.is_symlink():
            target = os.readlink(path)
            path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
            continue
        return path if path.is_file() else None
    return None


def find(root: Path, dirs: tuple[str, ...], name: str) -> Path | None:
    for d in dirs:
        found = resolve(root, f"{d}/{name}")
        if found is not None:
            return found
    return None


def mode_of(path: Path) -> int:
    return 0o755 if os.access(path, os.X_OK) else 0o644


def add_libraries(tree: Tree, staging: Path, elves: list[tuple[str, Path]]) -> None:
    """Every shared library the ELF files need, transitively, into /usr/lib/<triplet>."""
    queue = list(elves)
    while queue:
        who, path = queue.pop()
        for soname in elf.needed(path):
            dest = f"{LIBDIR}/{soname}"
            if dest in tree:
                continue
            lib = find(staging, LIB_DIRS, soname)
            if lib is None:
                raise PeBuildError(f"{who} needs {soname}, which no PE package provides")
            tree.add(dest, File(lib, 0o755))
            queue.append((soname, lib))


def add_python(tree: Tree, staging: Path) -> list[tuple[str, Path]]:
    """The interpreter and its standard library; returns its ELF files."""
    found = sorted(staging.glob("usr/bin/python3.[0-9]*"))
    interpreters = [p for p in found if p.name.replace("python3.", "").isdigit()]
    if not interpreters:
        raise PeBuildError("no python3.X interpreter in the PE packages")
    interp = interpreters[-1]
    tree.add(f"usr/bin/{interp.name}", File(interp, 0o755))
    tree.add("usr/bin/python3", Symlink(interp.name))
    elves = [(interp.name, interp)]
    stdlib = staging / "usr/lib" / interp.name
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in PYTHON_SKIP)
        for name in sorted(filenames):
            if name in PYTHON_SKIP or name.endswith(".pyc"):
                continue
            src = Path(dirpath) / name
            if src.parent.name == "lib-dynload" and (
                name.startswith(PYTHON_SKIP_PREFIX) or name.startswith(PYTHON_SKIP_EXT)
            ):
                continue
            rel = str(src.relative_to(staging))
            if src.is_symlink():
                tree.add(rel, Symlink(os.readlink(src)))
                continue
            tree.add(rel, File(src, mode_of(src)))
            if name.endswith(".so"):
                elves.append((name, src))
    return elves


def module_order(kernel_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """The modules to insert, dependencies first, as paths under /lib/modules/<ver>/."""
    paths: dict[str, str] = {}
    for ko in kernel_dir.rglob("*.ko"):
        paths[ko.stem.replace("-", "_")] = str(ko.relative_to(kernel_dir.parent))
    builtin_file = kernel_dir.parent / "modules.builtin"
    builtin = {
        Path(line.strip()).stem.replace("-", "_")
        for line in builtin_file.read_text().splitlines()
        if line.strip()
    }
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in paths:
            raise PeBuildError(f"kernel module {name} is neither in the kernel nor built in")
        for dep in elf.module_depends(kernel_dir.parent / paths[name]):
            visit(dep)
        order.append(paths[name])

    for module in wanted:
        visit(module)
    return order


def busybox_applets(busybox: Path) -> list[str]:
    done = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, timeout=30, check=True
    )
    return sorted(set(done.stdout.split()))


def pe_file(name: str) -> bytes:
    return resources.files("boot.pe").joinpath("files", name).read_bytes()


def assemble(staging: Path, *, kernel_version: str, release: str, agent_dir: Path) -> Tree:
    """The PE's tree from the unpacked packages in ``staging``."""
    tree = Tree()
    for d in ("dev", "proc", "sys", "run", "tmp", "root", "mnt", "var", "etc/masterline"):
        tree.add(d, Dir(0o700 if d == "root" else 0o755))
    tree.add("tmp", Dir(0o1777))
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        tree.add(link, Symlink(target))
    tree.add("lib64", Symlink("usr/lib64"))
    tree.add(
        "usr/lib64/ld-linux-x86-64.so.2", Symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    )
    tree.add("var/run", Symlink("../run"))
    # The kernel opens the console before /init mounts devtmpfs.
    tree.add("dev/console", CharDev(5, 1))
    tree.add("dev/null", CharDev(1, 3, 0o666))

    busybox = find(staging, BIN_DIRS, "busybox")
    if busybox is None or elf.needed(busybox):
        raise PeBuildError("busybox-static's static busybox is missing")
    tree.add("usr/bin/busybox", File(busybox, 0o755))
    elves: list[tuple[str, Path]] = []
    for name in BINARIES:
        path = find(staging, BIN_DIRS, name)
        if path is None:
            raise PeBuildError(f"{name} is missing from the PE packages")
        tree.add(f"usr/bin/{name}", File(path, 0o755))
        elves.append((name, path))
    for applet in busybox_applets(busybox):
        base = os.path.basename(applet)
        where = "usr/sbin" if "sbin/" in applet else "usr/bin"
        if f"usr/bin/{base}" in tree or f"usr/sbin/{base}" in tree:
            continue
        tree.add(f"{where}/{base}", Symlink("/usr/bin/busybox"))
    elves += add_python(tree, staging)
    add_libraries(tree, staging, elves)

    kernel_dir = staging / "lib/modules" / kernel_version / "kernel"
    modules = module_order(kernel_dir, MODULES)
    for rel in modules:
        tree.add(f"usr/lib/modules/{kernel_version}/{rel}", File(kernel_dir.parent / rel))
    tree.add("etc/masterline/modules", File("".join(f"{m}\n" for m in modules).encode()))

    for etc_path, text in ETC.items():
        tree.add(etc_path, File(text.encode(), 0o600 if etc_path == "etc/shadow" else 0o644))
    tree.add("etc/masterline/pe-release", File(f"{release}\n".encode()))
    tree.add("init", File(pe_file("init"), 0o755))
    tree.add("usr/share/udhcpc/default.script", File(pe_file("udhcpc.script"), 0o755))
    for src in sorted(agent_dir.glob("*.py")):
        tree.add(f"opt/masterline/agent/{src.name}", File(src))
    return tree
