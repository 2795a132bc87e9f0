"""The lab's state file under concurrent writers: worker threads reboot laptops at the
same moment (one thread per run), and each reboot rewrites that laptop's record."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from lab import sshd
from lab.lab import Lab, LabLaptop

ROUNDS = 25


def _record(tmp: Path, i: int) -> LabLaptop:
    d = tmp / f"LP{i}"
    return LabLaptop(
        name=f"LP{i}",
        serial=f"S{i}",
        smbios_uuid=f"uuid-{i}",
        macs=[],
        vendor="Dell",
        model="Latitude 5440",
        os_family="linux",
        dir=d,
        pe_root=d / "pe",
        os_root=d / "os",
        disk_path=d / "disk.img",
        disk_bytes=1,
        ssh_port=1,
        sshd_port=1,
        ssh_user="u",
        client_key_path=d / "k",
        known_hosts_path=d / "kh",
        host_key_fingerprint="fp",
    )


def test_concurrent_updates_keep_every_record_and_a_readable_file(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    records = [_record(tmp_path, i) for i in range(8)]
    lab._save(records)  # records only: no sshd, the state file is what is under test
    errors: list[BaseException] = []
    start = threading.Barrier(len(records) + 1)

    def writer(record: LabLaptop) -> None:
        try:
            start.wait(timeout=30)
            for round_ in range(ROUNDS):
                lab._update(replace(record, os_image_mtime_ns=round_))
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    def reader() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(ROUNDS * 4):
                assert len(lab.laptops()) == len(records)  # never a torn or partial file
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(r,)) for r in records]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    # No update was lost to another writer's stale read.
    assert {lp.name: lp.os_image_mtime_ns for lp in lab.laptops()} == {
        r.name: ROUNDS - 1 for r in records
    }
    assert sorted(p.name for p in lab.root.iterdir()) == [".lab.json.lock", "lab.json"]


def test_down_stops_the_laptops_even_with_a_damaged_state_file(lab: Lab) -> None:
    (laptop,) = lab.up_n(1)
    pid = sshd.read_pid(laptop.dir / "sshd" / "sshd.pid")
    assert pid is not None and sshd.alive(pid)
    (lab.root / "lab.json").write_text('{"laptops": []}\n]garbage')
    lab.down()
    assert not sshd.alive(pid)
