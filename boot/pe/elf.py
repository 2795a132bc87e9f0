"""Just enough ELF64 reading for the PE builder: a binary's shared-library needs
(``DT_NEEDED``) and a kernel module's ``.modinfo`` (its ``depends=``). Reading the files
instead of running ``ldd``/``modinfo`` keeps the build independent of the host's own
libraries and kernel."""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
PT_DYNAMIC = 2
DT_NULL = 0
DT_NEEDED = 1
DT_STRTAB = 5
PT_LOAD = 1


def is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == ELF_MAGIC


def _header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    if data[:4] != ELF_MAGIC or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    # e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    return phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx


def needed(path: Path) -> list[str]:
    """The sonames ``path`` links against, in order; [] for a static binary."""
    data = path.read_bytes()
    phoff, _shoff, phentsize, phnum, *_ = _header(data)
    loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entries: list[tuple[int, int]] = []
    offset, size = dynamic
    for pos in range(offset, offset + size, 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab_vaddr = next(v for t, v in entries if t == DT_STRTAB)
    # DT_STRTAB is an address: find the file offset of the segment that holds it.
    strtab = next(
        off + strtab_vaddr - vaddr
        for vaddr, off, filesz in loads
        if vaddr <= strtab_vaddr < vaddr + filesz
    )
    names = []
    for tag, value in entries:
        if tag == DT_NEEDED:
            start = strtab + value
            names.append(data[start : data.index(b"\0", start)].decode())
    return names


def section(path: Path, name: str) -> bytes | None:
    """The bytes of section ``name`` (``.modinfo`` of a ``.ko``), None if absent."""
    data = path.read_bytes()
    _phoff, shoff, _pe, _pn, shentsize, shnum, shstrndx = _header(data)

    def header(i: int) -> tuple[int, int, int]:
        sh_name, _t, _f, _a, sh_offset, sh_size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize
        )
        return sh_name, sh_offset, sh_size

    _n, names_off, _s = header(shstrndx)
    for i in range(shnum):
        sh_name, off, size = header(i)
        start = names_off + sh_name
        if data[start : data.index(b"\0", start)].decode() == name:
            return data[off : off + size]
    return None


def module_depends(path: Path) -> list[str]:
    """The module names a kernel module needs loaded first (``depends=`` of .modinfo)."""
    info = section(path, ".modinfo") or b""
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            value = field[len(b"depends=") :].decode()
            return [d for d in value.split(",") if d]
    return []
