"""``masterline pe build``: the initramfs format (read back by GNU cpio), the ELF reader
(against the dynamic loader), the build's reproducibility (a second build gives the same
sha256), what is inside the PE (its own libraries: its tools run in a chroot of it with
nothing from the host), the catalogue, and one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from typer.testing import CliRunner

from boot.pe import cpio, debian, elf, repository
from boot.pe.errors import PeBuildError
from cli import app
from core.console import console
from core.errors import MasterlineError

runner = CliRunner()


def masterline(*args: str, columns: int = 200) -> tuple[int, str]:
    # The console's width is read once, when core.console is imported: set it here.
    with patch.object(console, "_width", columns):
        result = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    if isinstance(result.exception, MasterlineError):
        return result.exception.exit_code, result.exception.message
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_cpio_is_read_back_by_gnu_cpio_and_is_the_same_bytes_twice(tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(b"x" * 1001)
    tree: dict[str, cpio.Node] = {
        "etc": cpio.Dir(),
        "etc/motd": cpio.File(b"hello\n"),
        "usr/bin/tool": cpio.File(source, 0o755),
        "usr": cpio.Dir(),
        "usr/bin": cpio.Dir(),
        "bin": cpio.Symlink("usr/bin"),
        "dev/console": cpio.CharDev(5, 1),
        "dev": cpio.Dir(),
    }
    first, second = io.BytesIO(), io.BytesIO()
    cpio.write(tree, first, mtime=1_700_000_000)
    cpio.write(dict(reversed(tree.items())), second, mtime=1_700_000_000)
    assert first.getvalue() == second.getvalue()  # insertion order does not matter

    listing = subprocess.run(
        ["cpio", "-t", "-v", "--quiet"], input=first.getvalue(), capture_output=True, check=True
    ).stdout.decode()
    lines = listing.splitlines()
    names = [ln.split()[-1] if " -> " not in ln else ln.split()[-3] for ln in lines]
    assert names == sorted(names) == sorted(tree)
    tool = next(ln for ln in lines if ln.endswith("usr/bin/tool"))
    assert tool.startswith("-rwxr-xr-x") and " 1001 " in tool and " root " in tool
    assert any(ln.startswith("crw-------") and "dev/console" in ln for ln in lines)
    assert any(ln.startswith("lrwxrwxrwx") and ln.endswith("bin -> usr/bin") for ln in lines)

    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
        input=first.getvalue(), cwd=out, capture_output=True, check=True,
    )  # fmt: skip
    assert (out / "usr/bin/tool").read_bytes() == source.read_bytes()
    assert (out / "etc/motd").read_text() == "hello\n"

    gz = tmp_path / "initrd.img"
    cpio.write_gzip(tree, gz, mtime=0)
    raw = gz.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # no timestamp in the gzip header (gzip -n)
    assert gzip.decompress(raw) != b"" and raw[3] & 0x08 == 0  # and no file name


def test_elf_needed_is_what_the_dynamic_loader_loads() -> None:
    binary = Path("/usr/bin/ssh")
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    loaded = {ln.split()[0] for ln in ldd.stdout.splitlines() if "=>" in ln}
    direct = set(elf.needed(binary))
    assert direct and direct <= loaded
    assert elf.needed(Path("/bin/busybox")) == [] if Path("/bin/busybox").exists() else True


def test_an_unknown_package_is_one_clear_error() -> None:
    with pytest.raises(PeBuildError, match="no such Debian package: masterline-no-such-pkg"):
        debian.candidates(["zstd", "masterline-no-such-pkg"])


def test_catalogue_errors_are_one_line(tmp_path: Path) -> None:
    code, out = masterline("pe", "use", "6.1.0-1-amd64-000000000000")
    assert code == 4 and out.count("\n") == 0 and "masterline pe build" in out
    code, out = masterline("pe", "list", "--json")
    assert code == 0 and json.loads(out) == []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_build_is_reproducible_and_stored_with_its_sha256(
    pe_build: tuple[Path, dict[str, Any]],
) -> None:
    built, manifest = pe_build
    # A second build, through the command line, into the catalogue of this test's data
    # dir (the packages come from the cache): the same bytes, so the same version.
    code, out = masterline("pe", "build", "--json")
    assert code == 0, out
    again = json.loads(out)
    assert again["files"] == manifest["files"]
    assert again["version"] == manifest["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+-\d+-amd64-[0-9a-f]{12}", again["version"])
    stored = repository.catalogue_dir() / again["version"]
    for name in (repository.KERNEL, repository.INITRD):
        assert sha256(stored / name) == sha256(built / name) == again["files"][name]["sha256"]

    code, out = masterline("pe", "list", "--json")
    listed = json.loads(out)
    assert [(m["version"], m["current"]) for m in listed] == [(again["version"], True)]
    assert {p["name"] for p in listed[0]["packages"]} >= {
        "busybox-static", "dropbear-bin", "zstd", "nvme-cli", "smartmontools", "util-linux",
    }  # fmt: skip
    code, out = masterline("pe", "list")
    assert code == 0 and again["version"] in out and "*" in out
    code, narrow = masterline("pe", "list", columns=80)  # a CI log, a bench PC's terminal
    assert code == 0 and again["version"] in narrow


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_the_pe_runs_its_tools_from_its_own_files(
    pe_build: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    built, manifest = pe_build
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
        input=gzip.decompress((built / repository.INITRD).read_bytes()), cwd=root, check=True,
    )  # fmt: skip
    assert os.access(root / "init", os.X_OK)
    modules = (root / "etc/masterline/modules").read_text().split()
    for driver in ("e1000.ko", "e1000e.ko", "virtio_net.ko", "nvme.ko", "ahci.ko", "sd_mod.ko"):
        assert any(m.endswith("/" + driver) for m in modules), driver
    for m in modules:
        assert (root / "usr/lib/modules" / manifest["kernel_version"] / m).is_file()

    def chroot(*cmd: str) -> str:
        done = subprocess.run(
            ["chroot", str(root), *cmd], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/sbin:/usr/bin"},
        )  # fmt: skip
        assert done.returncode == 0, (cmd, done.stderr)
        return done.stdout + done.stderr

    # Nothing from the host: these only run if the PE carries every library they need.
    agent = chroot(
        "/usr/bin/python3", "-s", "-c",
        "import sys, ssl, json, urllib.request, concurrent.futures; sys.path.insert(0, "
        "'/opt/masterline'); import agent.main, agent.relay; print(ssl.OPENSSL_VERSION)",
    )  # fmt: skip
    assert "OpenSSL" in agent
    # The relay as the pipeline starts it: a script beside its wire module, no site.
    relay = chroot(
        "/usr/bin/python3", "-S", "-c",
        "import sys; sys.path.insert(0, '/opt/masterline/agent'); import relay; "
        "print(relay.VERSION)",
    )  # fmt: skip
    assert relay.strip()
    assert "zstandard" in chroot("zstd", "--version").lower()
    assert "smartctl" in chroot("smartctl", "--version")
    assert "nvme" in chroot("nvme", "version")
    assert "lsblk" in chroot("lsblk", "--version")
    chroot("dropbearkey", "-t", "ed25519", "-f", "/tmp/key")
    public = chroot("dropbearkey", "-y", "-f", "/tmp/key")
    assert re.search(r"^ssh-ed25519 AAAA\S+", public, re.M)
    assert "BusyBox" in chroot("udhcpc", "--help")
