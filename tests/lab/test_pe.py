"""Lab laptops in the provisioning environment, reached by real SSH clients."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from lab import keys, sshd
from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from tests.support.lab import ssh_cli_argv, ssh_client, ssh_run
from tests.support.processes import live_processes
from tests.support.waiting import eventually

PE = "${MASTERLINE_PE_ROOT:-}"
WRITE = f'dd of="{PE}/dev/nvme0n1" bs=4M iflag=fullblock conv=notrunc,fsync status=none'
MiB = 1024 * 1024


def _read_back(laptop: LabLaptop, n: int) -> str:
    rc, out, err = ssh_run(laptop, f'head -c {n} "{PE}/dev/nvme0n1" | sha256sum')
    assert rc == 0, err
    return out.split()[0].decode()


def test_identity_answered_over_paramiko_with_pinned_host_key(lab: Lab) -> None:
    spec = LaptopSpec(serial="PF4ABC12", vendor="LENOVO", model="ThinkPad T14", disk_bytes=8 * MiB)
    (laptop,) = lab.up([spec])
    script = "; ".join(
        f'cat "{PE}/sys/class/dmi/id/{f}"'
        for f in ("product_serial", "product_uuid", "sys_vendor", "product_name")
    )
    rc, out, _ = ssh_run(laptop, script)
    assert rc == 0
    assert out.decode().splitlines() == [
        "PF4ABC12",
        laptop.smbios_uuid,
        "LENOVO",
        "ThinkPad T14",
    ]
    rc, out, _ = ssh_run(
        laptop,
        f'for d in "{PE}"/sys/block/*; do '
        'echo "$(basename $d) $(cat $d/size) $(cat $d/removable)"; done',
    )
    assert sorted(out.decode().splitlines()) == [f"nvme0n1 {8 * MiB // 512} 0", "sda 131072 1"]
    rc, out, _ = ssh_run(laptop, f'cat "{PE}"/sys/class/net/*/address')
    assert set(laptop.macs) <= set(out.decode().split())

    # The host key in known_hosts is the one the laptop presents: fingerprints agree, and
    # a client that knows another key refuses to connect.
    with ssh_client(laptop) as client:
        transport = client.get_transport()
        assert transport is not None
        key = transport.get_remote_server_key()
        assert key.fingerprint == laptop.host_key_fingerprint
    other = lab.up([LaptopSpec(serial="OTHER01", disk_bytes=MiB)])[0]
    other_key = keys.public_line(other.dir / "sshd" / "ssh_host_ed25519_key")
    pinned = lab.root / "wrong_known_hosts"
    pinned.write_text(keys.known_hosts_line("127.0.0.1", laptop.ssh_port, other_key))
    wrong = paramiko.SSHClient()
    wrong.load_host_keys(str(pinned))
    wrong.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        wrong.connect(
            laptop.host,
            port=laptop.ssh_port,
            username=laptop.ssh_user,
            key_filename=str(laptop.client_key_path),
            look_for_keys=False,
            allow_agent=False,
        )
    wrong.close()


def test_identity_over_openssh_cli_and_stream_to_disk(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="CLI0001", disk_bytes=32 * MiB)])
    out = subprocess.run(
        [*ssh_cli_argv(laptop), f'cat "{PE}/sys/class/dmi/id/product_serial"'],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout == b"CLI0001\n"
    data = os.urandom(9 * MiB + 123)
    subprocess.run([*ssh_cli_argv(laptop), WRITE], input=data, timeout=60, check=True)
    assert _read_back(laptop, len(data)) == hashlib.sha256(data).hexdigest()
    assert laptop.disk_path.read_bytes()[: len(data)] == data
    # The disk stays sparse-sized: the write did not grow it.
    assert laptop.disk_path.stat().st_size == 32 * MiB


def test_paramiko_stream_and_down_stops_every_process(lab: Lab) -> None:
    laptops = lab.up_n(2, disk_bytes=16 * MiB)
    data = os.urandom(5 * MiB)
    rc, _, err = ssh_run(laptops[1], WRITE, data)
    assert rc == 0, err
    assert _read_back(laptops[1], len(data)) == hashlib.sha256(data).hexdigest()
    pids = [sshd.read_pid(lp.dir / "sshd" / "sshd.pid") for lp in laptops]
    assert all(pid is not None and sshd.alive(pid) for pid in pids)
    with ssh_client(laptops[0]):
        # A session still open at down() ends with it.
        lab.down()
    assert not any(sshd.alive(pid) for pid in pids if pid is not None)
    assert not list(_lab_processes(lab))
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", laptops[0].ssh_port), 1):
        pass


def _lab_processes(lab: Lab) -> list[int]:
    root = str(lab.root).encode()
    return [pid for pid, argv in live_processes() if any(root in a for a in argv)]


def test_wrong_serial(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="RIGHT01", disk_bytes=MiB)])
    lab.set_fault(laptop.name, Fault.WRONG_SERIAL, serial="SOMEONEELSE")
    _, out, _ = ssh_run(laptop, f'cat "{PE}/sys/class/dmi/id/product_serial"')
    assert out == b"SOMEONEELSE\n"
    lab.clear_faults(laptop.name)
    _, out, _ = ssh_run(laptop, f'cat "{PE}/sys/class/dmi/id/product_serial"')
    assert out == b"RIGHT01\n"


def test_ssh_refused_then_back(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="REF0001", disk_bytes=MiB)])
    lab.set_fault(laptop.name, Fault.SSH_REFUSED)
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError), ssh_client(laptop):
        pass
    lab.clear_faults(laptop.name, Fault.SSH_REFUSED)
    assert ssh_run(laptop, "true")[0] == 0


def test_ssh_dropped_mid_stream(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="DROP001", disk_bytes=16 * MiB)])
    lab.set_fault(laptop.name, Fault.SSH_DROP, after_bytes=2 * MiB)
    with ssh_client(laptop) as client:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.settimeout(20)
        channel.exec_command(WRITE)
        data = os.urandom(256 * 1024)
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            for _ in range(64):
                channel.sendall(data)
            channel.shutdown_write()
            channel.recv_exit_status()
            raise OSError("stream ended")  # reached only if the channel closed cleanly
        eventually(lambda: not transport.is_active(), every=0.01, message="still connected")
    # The laptop itself is fine: the next connection works while the fault is cleared.
    lab.clear_faults(laptop.name)
    assert ssh_run(laptop, "true")[0] == 0


def test_slow_link_limits_throughput(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="SLOW001", disk_bytes=MiB)])
    lab.set_fault(laptop.name, Fault.SLOW_LINK, bytes_per_second=200_000)
    started = time.monotonic()
    rc, _, _ = ssh_run(laptop, "cat >/dev/null", os.urandom(400_000))
    elapsed = time.monotonic() - started
    assert rc == 0
    # 400 kB at 200 kB/s cannot arrive in under two seconds (a floor, not a timing bound).
    assert elapsed >= 1.9


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Fault.DISK_FULL, "No space left on device"), (Fault.DISK_WRITE_ERROR, "Input/output error")],
)
def test_disk_fails_part_way(lab: Lab, fault: Fault, reason: str) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="DISK001", disk_bytes=16 * MiB)])
    lab.set_fault(laptop.name, fault, after_bytes=MiB)
    data = os.urandom(2 * MiB + 1000)
    rc, _, err = ssh_run(laptop, WRITE, data)
    assert rc != 0
    assert reason in err.decode()
    written = laptop.disk_path.read_bytes()
    assert written[:MiB] == data[:MiB]
    assert written[MiB : len(data)] == bytes(len(data) - MiB)
    # Small writes that fit still succeed; other files are not affected.
    assert ssh_run(laptop, WRITE, b"x" * 100)[0] == 0
    assert ssh_run(laptop, "dd of=/dev/null status=none", data)[0] == 0
    lab.clear_faults(laptop.name)
    assert ssh_run(laptop, WRITE, data)[0] == 0


def test_flipped_byte_after_writing(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="FLIP001", disk_bytes=8 * MiB)])
    lab.set_fault(laptop.name, Fault.FLIPPED_BYTE, offset=4097)
    data = os.urandom(2 * MiB)
    rc, _, err = ssh_run(laptop, WRITE, data)
    assert rc == 0, err
    assert _read_back(laptop, len(data)) != hashlib.sha256(data).hexdigest()
    on_disk = laptop.disk_path.read_bytes()[: len(data)]
    assert [i for i in range(len(data)) if on_disk[i] != data[i]] == [4097]


def test_flush_error_fails_the_flush_not_the_write(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="FLUSH001", disk_bytes=8 * MiB)])
    lab.set_fault(laptop.name, Fault.FLUSH_ERROR)
    data = os.urandom(MiB)
    rc, _, err = ssh_run(laptop, f'zstd -q -c | zstd -dcq 1<>"{PE}/dev/nvme0n1"', data)
    assert rc == 0, err  # the write lands (in the disk's cache)...
    rc, _, err = ssh_run(laptop, f'sync "{PE}/dev/nvme0n1"')
    assert rc == 1 and b"Input/output error" in err  # ...its flush does not
    assert ssh_run(laptop, "sync")[0] == 0  # other flushes are not affected
    lab.clear_faults(laptop.name)
    assert ssh_run(laptop, f'sync "{PE}/dev/nvme0n1"')[0] == 0


def test_restart_moves_to_free_ports_when_taken(lab: Lab) -> None:
    (laptop,) = lab.up([LaptopSpec(serial="PORT001", disk_bytes=MiB)])
    lab.down()
    squatters = []
    for port in (laptop.ssh_port, laptop.sshd_port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        squatters.append(s)
    try:
        (moved,) = lab.start()
        assert moved.ssh_port != laptop.ssh_port
        assert moved.sshd_port != laptop.sshd_port
        # known_hosts follows the new port, so the host key still verifies.
        assert ssh_run(moved, f'cat "{PE}/sys/class/dmi/id/product_serial"')[1] == b"PORT001\n"
    finally:
        for s in squatters:
            s.close()


def test_lab_of_a_killed_process_stops_itself(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from lab.lab import Lab\n"
        "Lab(Path(sys.argv[1])).up_n(1, disk_bytes=1024 * 1024)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(root)], timeout=60, check=False)
    assert proc.returncode == -9
    lab = Lab(root, keep_running=True)
    try:
        assert len(lab.laptops()) == 1
        eventually(lambda: not _lab_processes(lab), message="lab processes left running")
    finally:
        lab.down()


def test_bad_input_is_one_clear_error_and_nothing_half_built(lab: Lab) -> None:
    from lab.errors import InvalidLabInput, LaptopExists, LaptopNotFound

    for spec in (
        LaptopSpec(serial="has space"),
        LaptopSpec(serial="OK1", disk_bytes=1000),
        LaptopSpec(serial="OK1", macs=["not-a-mac"]),
        LaptopSpec(serial="OK1", winrm_password="a:b"),
    ):
        with pytest.raises(InvalidLabInput):
            lab.up([LaptopSpec(serial="FIRST01", disk_bytes=MiB), spec])
    assert lab.laptops() == []
    assert not (lab.root / "laptops").exists()
    (laptop,) = lab.up([LaptopSpec(serial="FIRST01", disk_bytes=MiB)])
    with pytest.raises(LaptopExists):
        lab.up([LaptopSpec(serial="FIRST01", disk_bytes=MiB)])
    with pytest.raises(InvalidLabInput, match="takes no parameter"):
        lab.set_fault(laptop.name, Fault.SSH_DROP, after=3)
    with pytest.raises(InvalidLabInput, match="integer"):
        lab.set_fault(laptop.name, Fault.DISK_FULL, after_bytes="lots")
    with pytest.raises(InvalidLabInput):
        lab.set_fault(laptop.name, Fault.WRONG_SERIAL, serial="two\nlines")
    with pytest.raises(LaptopNotFound):
        lab.set_fault("nope", Fault.SSH_REFUSED)
    assert lab.faults(laptop.name) == {}
