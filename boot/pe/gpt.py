"""A GPT disk image around one EFI system partition, written directly (a protective
MBR, the primary and backup headers and partition arrays with their CRC32s): no loop
device, no mounting, no root."""

from __future__ import annotations

import shutil
import struct
import uuid
import zlib
from pathlib import Path

SECTOR = 512
FIRST_LBA = 2048  # 1 MiB aligned, as partitioning tools do
ENTRIES = 128
ENTRY_SIZE = 128
ARRAY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR  # 32
ESP_TYPE = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")


def _header(
    *, current: int, backup: int, last_usable: int, disk: uuid.UUID, array_lba: int, array_crc: int
) -> bytes:
    fields = struct.pack(
        "<8sIIIIQQQQ16sQIII",
        b"EFI PART",
        0x00010000,
        92,
        0,  # header CRC, filled below
        0,
        current,
        backup,
        2 + ARRAY_SECTORS,  # first usable LBA
        last_usable,
        disk.bytes_le,
        array_lba,
        ENTRIES,
        ENTRY_SIZE,
        array_crc,
    )
    crc = zlib.crc32(fields)
    fields = fields[:16] + struct.pack("<I", crc) + fields[20:]
    return fields + b"\0" * (SECTOR - len(fields))


def write_disk(
    esp: Path, out: Path, *, disk_guid: uuid.UUID, part_guid: uuid.UUID, name: str
) -> None:
    """``out``: a GPT disk whose one partition (an ESP) holds the bytes of ``esp``."""
    esp_size = esp.stat().st_size
    if esp_size % SECTOR:
        raise ValueError("the ESP image is not a whole number of sectors")
    esp_sectors = esp_size // SECTOR
    last_lba_of_esp = FIRST_LBA + esp_sectors - 1
    total = last_lba_of_esp + 1 + FIRST_LBA  # 1 MiB tail: the backup array and header
    last_usable = total - ARRAY_SECTORS - 2

    entry = struct.pack(
        "<16s16sQQQ72s",
        ESP_TYPE.bytes_le,
        part_guid.bytes_le,
        FIRST_LBA,
        last_lba_of_esp,
        0,
        name.encode("utf-16-le")[:72],
    )
    array = entry + b"\0" * (ENTRIES * ENTRY_SIZE - len(entry))
    array_crc = zlib.crc32(array)

    mbr = bytearray(SECTOR)
    mbr[446:462] = struct.pack(
        "<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, min(total - 1, 0xFFFFFFFF)
    )
    mbr[510:512] = b"\x55\xaa"
    primary = _header(
        current=1, backup=total - 1, last_usable=last_usable, disk=disk_guid, array_lba=2,
        array_crc=array_crc,
    )  # fmt: skip
    backup = _header(
        current=total - 1, backup=1, last_usable=last_usable, disk=disk_guid,
        array_lba=total - 1 - ARRAY_SECTORS, array_crc=array_crc,
    )  # fmt: skip
    with out.open("wb") as f:
        f.write(mbr)
        f.write(primary)
        f.write(array)
        f.seek(FIRST_LBA * SECTOR)
        with esp.open("rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
        f.seek((total - 1 - ARRAY_SECTORS) * SECTOR)
        f.write(array)
        f.write(backup)
