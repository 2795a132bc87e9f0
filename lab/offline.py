"""What the PE wrote into the mounted installed system, carried into that system when a lab
laptop boots it (a real PE writes straight onto the target disk; the lab's disk is an
opaque file)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lab.laptop import LabLaptop


def offline_root(laptop: LabLaptop) -> Path:
    """Where the PE has the installed system mounted: ``$MASTERLINE_PE_ROOT/mnt/target``
    (the pipeline's default offline root)."""
    return laptop.pe_root / "mnt" / "target"


def apply_offline(laptop: LabLaptop) -> None:
    """What the PE wrote into the mounted installed system is in that system after the
    boot. A real PE writes straight onto the target disk; the lab's disk is an opaque
    file, so the files wait under ``mnt/target`` and move into the OS here, after a
    fresh install has wiped the previous one (and the PE's mount is gone afterwards).

    Linux: the tree is copied into ``os_root`` (``/var/cache/x`` → ``os_root/var/cache/x``,
    what Ansible sees under ``target_root``). Windows: the mount is the C: drive, so
    ``ProgramData/Masterline/Installers/x.msi`` → ``C:\\ProgramData\\Masterline\\Installers\\x.msi``
    in the laptop's Windows state (kept in JSON: lab installers should stay small), and
    the computer takes the name in ``Windows/Panther/unattend.xml``, as Setup does.
    """
    root = offline_root(laptop)
    if not root.is_dir():
        return
    if laptop.os_family == "linux":
        shutil.copytree(root, laptop.os_root, symlinks=True, dirs_exist_ok=True)
    else:
        from lab.winrm.state import WindowsState

        files = {
            "C:\\" + "\\".join(f.relative_to(root).parts): f.read_bytes()
            for f in sorted(root.rglob("*"))
            if f.is_file() and not f.is_symlink()
        }
        state = WindowsState(laptop.dir)
        state.put_files(files)
        name = _unattend_computer_name(root / "Windows" / "Panther" / "unattend.xml")
        if name:
            with state.locked() as s:  # Windows Setup's specialize pass
                s["computer_name"] = name
    shutil.rmtree(root)


def _unattend_computer_name(path: Path) -> str | None:
    """``ComputerName`` of an answer file's specialize pass, as Windows Setup reads it."""
    import xml.etree.ElementTree as ET

    try:
        text = path.read_text(encoding="utf-8")
        if "<!DOCTYPE" in text or "<!ENTITY" in text:
            return None  # no DTD, so no entity expansion
        root = ET.fromstring(text)  # noqa: S314 - no DTD (checked above)
    except (OSError, UnicodeDecodeError, ET.ParseError):
        return None
    ns = "{urn:schemas-microsoft-com:unattend}"
    for settings in root.iter(f"{ns}settings"):
        if settings.get("pass") == "specialize":
            for name in settings.iter(f"{ns}ComputerName"):
                if name.text and name.text.strip() not in ("", "*"):
                    return name.text.strip()[:15]  # NetBIOS names stop at 15
    return None
