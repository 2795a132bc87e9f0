"""Imaging against real lab laptops (real sshd, real OpenSSH client, real paramiko)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from lab.faults import Fault
from lab.lab import Lab, LabLaptop
from provisioning.errors import (
    ChecksumMismatch,
    ConnectFailed,
    DiskFull,
    HostKeyMismatch,
)
from provisioning.imaging.cache import ImageSource, SentHashes, ensure_cached, file_key
from provisioning.imaging.identity import identify, pick_disk
from provisioning.imaging.pacing import TokenBucket
from provisioning.imaging.stream import stream_image, verify
from provisioning.transports.base import SshEndpoint
from provisioning.transports.ssh import SSHTransport
from tests.support.harness import ssh_clients_to
from tests.support.images import MiB, make_image
from tests.support.waiting import eventually


def _endpoint(lp: LabLaptop, *, known_hosts: Path | None = None) -> SshEndpoint:
    return SshEndpoint(
        lp.host, lp.ssh_port, lp.ssh_user, lp.client_key_path, known_hosts or lp.known_hosts_path
    )


def _source(tmp_path: Path, *, fmt: str = "raw+zstd", mib: int = 4) -> ImageSource:
    img = make_image(tmp_path / "store", mib=mib)
    path, size, sha = (
        (img.zst_path, img.zst_size, img.zst_sha256)
        if fmt == "raw+zstd"
        else (img.raw_path, img.raw_size, img.raw_sha256)
    )
    return ImageSource(
        image_id=1,
        path=path,
        format=fmt,
        size=size,
        sha256=sha,
        raw_size=img.raw_size,
        raw_sha256=img.raw_sha256,
    )


@pytest.mark.parametrize("fmt", ["raw", "raw+zstd"])
def test_stream_and_readback(lab: Lab, tmp_path: Path, fmt: str) -> None:
    (lp,) = lab.up_n(1, disk_bytes=16 * MiB)
    source = _source(tmp_path, fmt=fmt)
    cached = ensure_cached(source, tmp_path / "cache" / "PAR")
    transport = SSHTransport(_endpoint(lp))
    try:
        disk = pick_disk(identify(transport, timeout=20))
        assert disk.name == "nvme0n1"  # the removable USB stick is never chosen
        seen: list[int] = []
        written = stream_image(transport, cached, disk, timeout=60, progress=seen.append)
        assert verify(transport, cached, disk.name, timeout=60) == source.raw_sha256
    finally:
        transport.close()
    raw = source.path.read_bytes() if fmt == "raw" else None
    on_disk = lp.disk_path.read_bytes()[: source.raw_size]
    assert hashlib.sha256(on_disk).hexdigest() == source.raw_sha256
    if raw is not None:
        assert on_disk == raw
    # Zero blocks are not sent: the wire carries the compressed stream only.
    assert written.bytes_sent == cached.size < source.raw_size * 0.51  # half is zeros
    assert seen and seen[-1] == written.bytes_sent


def test_an_image_is_hashed_once_and_every_laptop_is_still_checked(
    lab: Lab, tmp_path: Path
) -> None:
    """The second stream of one cached file takes the first one's hash instead of
    hashing again; a changed file is hashed again and refused; and a file changed behind
    the memo's back (same inode, size and mtime) still never passes verify."""
    one, two = lab.up_n(2, disk_bytes=16 * MiB)
    cached = ensure_cached(_source(tmp_path), tmp_path / "cache")
    transports = [SSHTransport(_endpoint(lp)) for lp in (one, two)]
    try:
        disks = [pick_disk(identify(t, timeout=20)) for t in transports]
        for t, d in zip(transports, disks, strict=True):
            written = stream_image(t, cached, d, timeout=60)
            assert written.sent_sha256 == cached.sha256
            verify(t, cached, d.name, timeout=60)

        data = bytearray(cached.path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        with open(cached.path, "r+b") as f:  # in place: same inode and size
            f.write(data)
        with pytest.raises(ChecksumMismatch, match="bytes sent differ"):
            stream_image(transports[0], cached, disks[0], timeout=60)

        hidden = tmp_path / "cache2"
        cached2 = ensure_cached(_source(tmp_path / "b"), hidden)
        stream_image(transports[0], cached2, disks[0], timeout=60)
        st = cached2.path.stat()
        data = bytearray(cached2.path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        with open(cached2.path, "r+b") as f:
            f.write(data)
        os.utime(cached2.path, ns=(st.st_atime_ns, st.st_mtime_ns))
        stream_image(transports[1], cached2, disks[1], timeout=60)  # memo: no rehash
        with pytest.raises(ChecksumMismatch, match="readback"):
            verify(transports[1], cached2, disks[1].name, timeout=60)
    finally:
        for t in transports:
            t.close()


def test_a_file_system_that_cannot_splice_still_streams(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems refuse splice (EINVAL on the first range): a paced stream (the
    one that goes through the pipe) writes the mapping instead and the laptop still gets
    every byte."""
    import errno

    refused: list[int] = []

    def refuse(*args: object, **kwargs: object) -> int:
        refused.append(1)
        raise OSError(errno.EINVAL, "Invalid argument")

    # The os module the SSH transport splices with (the process's one, patched for now).
    monkeypatch.setattr("provisioning.transports.ssh.os.splice", refuse)
    (lp,) = lab.up_n(1, disk_bytes=16 * MiB)
    cached = ensure_cached(_source(tmp_path), tmp_path / "cache")
    transport = SSHTransport(_endpoint(lp))
    try:
        disk = pick_disk(identify(transport, timeout=20))
        bucket = TokenBucket(rate=float(1 << 40))  # paced, never held back
        written = stream_image(transport, cached, disk, timeout=60, bucket=bucket)
        assert written.bytes_sent == cached.size
        assert verify(transport, cached, disk.name, timeout=60) == cached.raw_sha256
    finally:
        transport.close()
    assert refused == [1]  # tried once, then never again for this stream


def test_an_unpaced_stream_hands_ssh_the_file_and_stops_with_an_abort(
    lab: Lab, tmp_path: Path
) -> None:
    """Unpaced, ``ssh`` reads the cached file itself: progress is its file offset, and an
    abort raised by the progress callback kills it mid-stream.

    The image is far larger than what ``ssh`` reads ahead of the slow link: it takes
    one SSH channel window (2 MiB) from its stdin at once, then only as the laptop
    consumes. A 2 MiB image used to fit in that window but for 737 bytes, so its offset
    reached the end ~0.15 s after the first read and a progress poll delayed by a busy
    machine saw the whole file sent (the flake). At 12 MiB and 256 KiB/s, the offset
    stays short of the end for ~40 s whatever the load."""
    from lab.faults import Fault
    from provisioning.errors import Aborted

    (lp,) = lab.up_n(1, disk_bytes=32 * MiB)
    lab.set_fault(lp.name, Fault.SLOW_LINK, bytes_per_second=256 * 1024)
    cached = ensure_cached(_source(tmp_path, mib=24), tmp_path / "cache")
    assert cached.size > 4 * 2 * MiB  # several channel windows
    transport = SSHTransport(_endpoint(lp))
    seen: list[int] = []
    stdin: list[str] = []

    def progress(sent: int) -> None:
        seen.append(sent)
        if sent > 0:
            stdin.extend(os.readlink(f"/proc/{pid}/fd/0") for pid in ssh_clients_to(lp.ssh_port))
            raise Aborted("aborted by a technician")

    try:
        disk = pick_disk(identify(transport, timeout=20))
        with pytest.raises(Aborted):
            stream_image(transport, cached, disk, timeout=60, progress=progress)
    finally:
        transport.close()
    assert seen[0] == 0 and 0 < seen[-1] < cached.size
    assert stdin == [str(cached.path)]  # ssh read the cached file itself
    assert ssh_clients_to(lp.ssh_port) == []  # killed, not left running


def test_streams_waiting_on_a_failed_hasher_hash_the_file_themselves(tmp_path: Path) -> None:
    path = tmp_path / "image.zst"
    path.write_bytes(os.urandom(3 * MiB))
    memo = SentHashes()
    key = file_key(path)
    assert memo.claim(key) and not memo.claim(key)  # the first stream hashes, not the next
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(memo.result(key, path, timeout=30)))
    waiter.start()
    eventually(lambda: memo.waiting(key) == 1, message="the waiter never parked")
    assert not got  # parked on the claimer's stream, not hashing on its own
    memo.done(key, None)  # the claimer's stream broke before sending it all
    waiter.join(timeout=30)
    assert got == [hashlib.sha256(path.read_bytes()).hexdigest()]
    assert memo.claim(key)  # nothing was published: the next stream hashes again


def test_flipped_byte_fails_readback(lab: Lab, tmp_path: Path) -> None:
    (lp,) = lab.up_n(1, disk_bytes=16 * MiB)
    lab.set_fault(lp.name, Fault.FLIPPED_BYTE, offset=12345)
    cached = ensure_cached(_source(tmp_path), tmp_path / "cache")
    transport = SSHTransport(_endpoint(lp))
    try:
        disk = pick_disk(identify(transport, timeout=20))
        stream_image(transport, cached, disk, timeout=60)
        with pytest.raises(ChecksumMismatch):
            verify(transport, cached, disk.name, timeout=60)
    finally:
        transport.close()


def test_disk_full_is_fatal(lab: Lab, tmp_path: Path) -> None:
    (lp,) = lab.up_n(1, disk_bytes=16 * MiB)
    lab.set_fault(lp.name, Fault.DISK_FULL, after_bytes=MiB)
    cached = ensure_cached(_source(tmp_path), tmp_path / "cache")
    transport = SSHTransport(_endpoint(lp))
    try:
        disk = pick_disk(identify(transport, timeout=20))
        with pytest.raises(DiskFull) as e:
            stream_image(transport, cached, disk, timeout=60)
        assert not e.value.retryable
    finally:
        transport.close()


def test_image_larger_than_disk_is_disk_full(lab: Lab, tmp_path: Path) -> None:
    (lp,) = lab.up_n(1, disk_bytes=2 * MiB)
    cached = ensure_cached(_source(tmp_path), tmp_path / "cache")
    transport = SSHTransport(_endpoint(lp))
    try:
        disk = pick_disk(identify(transport, timeout=20))
        with pytest.raises(DiskFull):
            stream_image(transport, cached, disk, timeout=60)
    finally:
        transport.close()
    assert lp.disk_path.read_bytes().count(0) == lp.disk_path.stat().st_size  # untouched


def test_host_key_mismatch_is_fatal_on_both_clients(lab: Lab, tmp_path: Path) -> None:
    one, other = lab.up_n(2, disk_bytes=16 * MiB)
    # The other laptop's pinned key file names a different key for this host:port.
    wrong = tmp_path / "known_hosts"
    key_line = other.known_hosts_path.read_text().split(" ", 1)[1]
    wrong.write_text(f"[{one.host}]:{one.ssh_port} {key_line}")
    transport = SSHTransport(_endpoint(one, known_hosts=wrong))
    with pytest.raises(HostKeyMismatch) as e:
        transport.run("true", timeout=10)
    assert not e.value.retryable
    with pytest.raises(HostKeyMismatch):
        transport.put_stream("cat > /dev/null", [b"x"], timeout=10)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyMismatch):
        SSHTransport(_endpoint(one, known_hosts=empty)).run("true", timeout=10)


def test_refused_is_retryable(lab: Lab, tmp_path: Path) -> None:
    (lp,) = lab.up_n(1, disk_bytes=16 * MiB)
    lab.set_fault(lp.name, Fault.SSH_REFUSED)
    transport = SSHTransport(_endpoint(lp), connect_timeout=5)
    with pytest.raises(ConnectFailed) as e:
        transport.run("true", timeout=10)
    assert e.value.retryable
    with pytest.raises(ConnectFailed):
        transport.put_stream("cat > /dev/null", [b"x"], timeout=10)


def test_site_cache_reads_the_central_store_once(tmp_path: Path) -> None:
    source = _source(tmp_path, fmt="raw")
    first = ensure_cached(source, tmp_path / "cache" / "PAR")
    source.path.unlink()  # the central store is gone: the site serves from its cache
    again = ensure_cached(source, tmp_path / "cache" / "PAR")
    assert again == first
    assert first.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame


def test_corrupt_central_file_is_refused(tmp_path: Path) -> None:
    source = _source(tmp_path)
    with open(source.path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(ChecksumMismatch):
        ensure_cached(source, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.zst"))


def test_token_bucket_paces_a_site_to_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock: sleeping advances it; sending 10 MiB at 1 MiB/s must sleep ~10 s."""
    clock = {"now": 1000.0, "slept": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds
        clock["slept"] += seconds

    bucket = TokenBucket(rate=float(MiB), clock=lambda: clock["now"], sleep=sleep)
    for _ in range(10):
        bucket.take(MiB)
    assert 9.0 <= clock["slept"] <= 10.5


def test_a_rerated_bucket_follows_its_new_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate 0 holds the stream; a lowered share is not overrun by tokens saved before."""
    clock = {"now": 1000.0, "slept": 0.0}

    def sleep(seconds: float) -> None:
        clock["now"] += seconds
        clock["slept"] += seconds
        if clock["slept"] >= 5.0 and bucket.rate == 0:
            bucket.set_rate(2 * MiB)  # the engine grants a share while the stream waits

    bucket = TokenBucket(rate=0.0, clock=lambda: clock["now"], sleep=sleep)
    bucket.take(MiB)  # held at rate 0 until the share arrives, then ~0.5 s at 2 MiB/s
    assert 5.0 <= clock["slept"] <= 6.0
    clock["now"] += 10.0  # idle: 4 MiB of burst saved up at 2 MiB/s
    bucket.set_rate(MiB / 4)  # ...but the share drops to 256 KiB/s
    clock["slept"] = 0.0
    for _ in range(2):
        bucket.take(MiB)
    assert clock["slept"] >= 6.0  # 2 MiB minus one second of the new rate, at 256 KiB/s
