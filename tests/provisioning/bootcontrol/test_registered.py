"""The ``registered`` boot control's rules, on a real database with PEs registered through
the real API (``POST /boot/register``): which registration the pipeline trusts, when a
run waits, when a PE's go resumes a run, and a re-registered PE's new host key checked
by a real sshd."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from boot.registration import sites
from boot.registration.models import PeBoot
from boot.registration.schemas import SiteSettingsUpdate
from boot.registration.service import end_boot
from core.db import Database
from core.principal import SYSTEM
from core.settings import get_settings
from core.timeutil import utcnow
from inventory import lifecycle as device_lifecycle
from inventory import service as inventory
from inventory.models import Device, DeviceEvent
from inventory.schemas import ScanRequest
from inventory.states import DeviceState, Event
from lab.keys import generate_ed25519, public_line
from lab.lab import Lab, LabLaptop
from provisioning.bootcontrol import registry, seal
from provisioning.bootcontrol.base import SEALED_OS, PeAccess
from provisioning.errors import (
    CommandFailed,
    CommandTimedOut,
    ConnectFailed,
    HostKeyMismatch,
    IdentityMismatch,
    NoLivePe,
    ProvisioningError,
)
from provisioning.pipeline import stages
from provisioning.pipeline.bandwidth import SiteShares
from provisioning.pipeline.context import ContextBuilder
from provisioning.pipeline.steps import StepContext, step_at, step_offline_and_reboot
from provisioning.runs import lifecycle, repository
from provisioning.runs.models import ProvisioningRun, RunStatus
from provisioning.runs.states import STEP_NAMES
from provisioning.transports.base import CommandResult, StreamResult
from provisioning.transports.ssh import SSHTransport
from tests.boot.conftest import HOST_KEY, HOST_KEY_2, PE_ADDRESS, Boot, pe_client, register
from tests.support.harness import (
    LINUX_CONFIG,
    activate_config,
    engine_config,
    local_store,
    publish_image,
)
from tests.support.images import make_image
from tests.support.registered_lab import site_worker_key


@pytest.fixture
def worker_key(boot: Boot, tmp_path: Path) -> Path:
    """The site's worker key: its private half on the worker, its public half handed to
    every PE that registers at PAR."""
    return site_worker_key(boot, tmp_path)


@pytest.fixture
def pe(boot: Boot, worker_key: Path) -> Iterator[TestClient]:
    with pe_client(boot.db) as client:
        yield client


def scan(db: Database, serial: str, bench_id: int) -> Device:
    with db.session() as s:
        return inventory.scan(s, ScanRequest(code=serial, bench_id=bench_id), SYSTEM).device


def device(db: Database, serial: str) -> Device:
    with db.session(write=False) as s:
        return s.exec(select(Device).where(Device.serial == serial)).one()


def access(db: Database, serial: str) -> PeAccess:
    """What the pipeline's context builder asks: this laptop's control, then its PE."""
    with db.session(write=False) as s:
        d = s.exec(select(Device).where(Device.serial == serial)).one()
        control = registry.select(s, d)
        assert control.name == "registered"  # no slot is wired: the default
        return control.pe_access(s, d)


def boot_row(db: Database, boot_id: int) -> PeBoot:
    with db.session(write=False) as s:
        row = s.get(PeBoot, boot_id)
        assert row is not None
        return row


def test_a_registered_pe_is_reached_where_it_registered_with_its_own_host_key(
    boot: Boot, pe: TestClient, worker_key: Path
) -> None:
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    r = register(pe, boot.credential, "ACME0001", ssh_port=2222)
    assert r.status_code == 200, r.text
    got = access(boot.db, "ACME0001")
    assert got.control == "registered"
    ep = got.endpoint
    assert (ep.host, ep.port, ep.user) == (PE_ADDRESS, 2222, "root")
    assert ep.key_path == worker_key
    key_type, key_b64 = HOST_KEY.split()[:2]
    assert ep.known_hosts_path.read_text() == f"[{PE_ADDRESS}]:2222 {key_type} {key_b64}\n"
    assert got.options["boot_id"] == r.json()["boot_id"]


def test_no_registration_or_a_dead_one_is_a_wait_with_its_reason(
    boot: Boot, pe: TestClient
) -> None:
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    with pytest.raises(NoLivePe, match="ACME0001 has registered yet: power it on"):
        access(boot.db, "ACME0001")
    boot_id = register(pe, boot.credential, "ACME0001").json()["boot_id"]
    access(boot.db, "ACME0001")
    # Silent past the site's limit (5 s here): no heartbeat for a minute.
    with boot.db.session() as s:
        row = s.get(PeBoot, boot_id)
        assert row is not None
        row.last_seen_at = utcnow() - timedelta(seconds=60)
        s.add(row)
    with pytest.raises(NoLivePe, match=r"has been silent for \d+ s"):
        access(boot.db, "ACME0001")
    # Heartbeating again, but its agent token has expired.
    with boot.db.session() as s:
        row = s.get(PeBoot, boot_id)
        assert row is not None
        row.last_seen_at = utcnow()
        row.token_expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
    with pytest.raises(NoLivePe, match=r"no longer registered \(its agent token expired\)"):
        access(boot.db, "ACME0001")
    # A new boot replaces it; then that one ends (the laptop reboots into its OS).
    register(pe, boot.credential, "ACME0001", host_key=HOST_KEY_2)
    access(boot.db, "ACME0001")
    assert boot_row(boot.db, boot_id).ended_reason == "superseded by a new boot of the same laptop"
    with boot.db.session() as s:
        assert end_boot(s, device(boot.db, "ACME0001").id or 0, reason="powered off by staff")
    with pytest.raises(NoLivePe, match=r"no longer registered \(powered off by staff\)"):
        access(boot.db, "ACME0001")


def test_a_pe_superseded_by_a_boot_that_has_no_go_yet_is_not_used(
    boot: Boot, pe: TestClient
) -> None:
    """A new boot of the laptop (another host key) ends the old one at once, even while
    the new one is told to wait: the old PE's address and key are not used any more."""
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    assert register(pe, boot.credential, "ACME0001").status_code == 200
    access(boot.db, "ACME0001")
    with boot.db.session() as s:
        sites.update_settings(s, "PAR", SiteSettingsUpdate(worker_public_keys=[]))
    r = register(pe, boot.credential, "ACME0001", host_key=HOST_KEY_2)
    assert r.status_code == 202 and r.json()["reason"] == "no worker key"
    with pytest.raises(NoLivePe, match=r"superseded by a new boot of the same laptop"):
        access(boot.db, "ACME0001")


def test_another_laptops_pe_is_never_used(boot: Boot, pe: TestClient) -> None:
    """ACME0001's PE is registered; GLBX0001 (another client's laptop, scanned at the same
    bench) is not reached through it, and a PE that claims GLBX0001 with a credential
    bound to ACME is refused and gives it nothing either."""
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    scan(boot.db, "GLBX0001", boot.bench.id or 0)
    assert register(pe, boot.credential, "ACME0001").status_code == 200
    with pytest.raises(NoLivePe, match="GLBX0001 has registered yet"):
        access(boot.db, "GLBX0001")
    from boot.registration import credentials
    from boot.registration.schemas import CredentialCreate

    with boot.db.session() as s:
        _, acme_only = credentials.create_credential(
            s,
            CredentialCreate(name="ACME B1", site_code="PAR", bench_code="B1", client_code="ACME"),
            SYSTEM,
        )
    r = register(pe, acme_only, "GLBX0001", host_key=HOST_KEY_2)
    assert r.status_code == 403 and r.json()["reason"] == "other_client"
    with pytest.raises(NoLivePe, match="GLBX0001 has registered yet"):
        access(boot.db, "GLBX0001")


def test_once_in_its_installed_os_the_laptop_is_found_where_its_last_pe_was(
    boot: Boot, pe: TestClient
) -> None:
    d = scan(boot.db, "ACME0001", boot.bench.id or 0)
    register(pe, boot.credential, "ACME0001")
    with boot.db.session() as s:
        assert end_boot(s, d.id or 0, reason="rebooted into its installed OS")
        locked = s.get(Device, d.id)
        assert locked is not None
        for event in (Event.QUEUE, Event.IMAGE, Event.CONFIGURE):
            device_lifecycle.apply(s, locked, event, actor="test")
    got = access(boot.db, "ACME0001")
    assert got.endpoint.host == PE_ADDRESS


def test_a_site_without_a_worker_key_path_is_a_clear_failure_not_a_wait(boot: Boot) -> None:
    """PAR hands PEs a public key only (the worker runs elsewhere): this worker has no
    private key to log in with."""
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    with pe_client(boot.db) as pe:
        assert register(pe, boot.credential, "ACME0001").status_code == 200
    with pytest.raises(CommandFailed, match="no worker key path") as e:
        access(boot.db, "ACME0001")
    assert not isinstance(e.value, NoLivePe)


# Resuming on a PE's go.
@pytest.fixture
def queued(boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """ACME0001 scanned with its client ready: its run is queued. Returns the run id."""
    with local_store(tmp_path, monkeypatch):
        assert boot.world.acme.id is not None
        publish_image(
            boot.db,
            client_id=boot.world.acme.id,
            image=make_image(tmp_path / "img", mib=1),
            os_family="linux",
        )
        activate_config(boot.db, client_id=boot.world.acme.id, body=LINUX_CONFIG)
        d = scan(boot.db, "ACME0001", boot.bench.id or 0)
        with boot.db.session(write=False) as s:
            run = repository.active_run_of_device(s, d.id or 0)
            assert run is not None and run.id is not None
            yield run.id


def _run(db: Database, run_id: int) -> ProvisioningRun:
    with db.session(write=False) as s:
        row = s.get(ProvisioningRun, run_id)
        assert row is not None
        return row


def test_a_run_without_a_pe_waits_queued_and_the_pes_go_resumes_it(
    boot: Boot, pe: TestClient, queued: int, tmp_path: Path
) -> None:
    from tests.support.harness import engine_config, running_engine
    from tests.support.waiting import eventually

    def waiting_run() -> ProvisioningRun | None:
        run = _run(boot.db, queued)
        return run if run.last_error else None

    config = engine_config(tmp_path, pe_wait_seconds=3600)
    with running_engine(boot.db, config):
        waiting = eventually(
            waiting_run,
            timeout=60,
            message="the run never waited",
        )
    assert waiting.status == RunStatus.QUEUED and waiting.worker_id is None
    assert waiting.lease_until is not None and waiting.lease_until > utcnow()
    assert waiting.last_error is not None
    assert waiting.last_error.startswith("identify: waiting: no provisioning environment")
    # Nothing of the step's start was kept: the laptop is still QUEUED, not IMAGING.
    assert device(boot.db, "ACME0001").state == DeviceState.QUEUED
    with boot.db.session(write=False) as s:
        kinds = [e.kind for e in repository.run_events(s, queued)]
    assert "step_started" not in kinds and kinds.count("waiting") == 1
    r = register(pe, boot.credential, "ACME0001")
    assert r.status_code == 200
    resumed = _run(boot.db, queued)
    assert resumed.status == RunStatus.QUEUED and resumed.lease_until is None
    with boot.db.session(write=False) as s:
        last = repository.run_events(s, queued)[-1]
    assert last.kind == "pe_registered" and f"boot {r.json()['boot_id']}" in last.message


def test_a_waiting_run_looks_again_without_filling_its_log(
    boot: Boot, queued: int, tmp_path: Path
) -> None:
    """With no PE and no registration to wake it, the worker looks again after each
    ``pe_wait_seconds``: the run stays queued, and its log says once that it waits."""
    from tests.support.harness import engine_config, running_engine
    from tests.support.waiting import eventually

    looks: list[object] = []

    def looked_again() -> bool:
        until = _run(boot.db, queued).lease_until
        if until is not None and until not in looks:
            looks.append(until)
        return len(looks) >= 3

    with running_engine(boot.db, engine_config(tmp_path, pe_wait_seconds=0.2)):
        eventually(looked_again, timeout=120, message="the worker never looked again")
    run = _run(boot.db, queued)
    assert run.status == RunStatus.QUEUED
    assert device(boot.db, "ACME0001").state == DeviceState.QUEUED
    with boot.db.session(write=False) as s:
        kinds = [e.kind for e in repository.run_events(s, queued)]
    assert kinds == ["queued", "claimed", "waiting"]


def _fail(db: Database, run_id: int, error: ProvisioningError) -> None:
    with db.session() as s:
        run = repository.get_run_for_update(s, run_id)
        assert run is not None
        stages.fail(s, run, step="identify", error=error, actor="worker:test")


def test_a_run_failed_only_because_no_pe_answered_resumes_on_go(
    boot: Boot, pe: TestClient, queued: int
) -> None:
    _fail(boot.db, queued, ConnectFailed("connection to 10.20.0.57:22 refused"))
    assert device(boot.db, "ACME0001").state == DeviceState.FAILED_IMAGING
    r = register(pe, boot.credential, "ACME0001")
    assert r.status_code == 200
    run = _run(boot.db, queued)
    assert run.status == RunStatus.QUEUED and run.step_index == 0 and run.run_attempt == 2
    assert device(boot.db, "ACME0001").state == DeviceState.QUEUED
    with boot.db.session(write=False) as s:
        retry = s.exec(select(DeviceEvent).where(DeviceEvent.event == Event.RETRY.value)).one()
    assert retry.actor == f"pe:boot-{r.json()['boot_id']}"


def test_a_run_that_failed_for_another_reason_waits_for_a_technician(
    boot: Boot, pe: TestClient, queued: int
) -> None:
    _fail(boot.db, queued, IdentityMismatch("identity mismatch: LAB9999, ACME0001 was scanned"))
    assert register(pe, boot.credential, "ACME0001").status_code == 200
    assert _run(boot.db, queued).status == RunStatus.FAILED
    assert device(boot.db, "ACME0001").state == DeviceState.FAILED_IMAGING


# With a real sshd: a new boot's host key, and the reboot.
def _register_lab_laptop(boot: Boot, laptop: LabLaptop, host_key: str | None = None) -> PeAccess:
    """ACME0001's PE registered from 127.0.0.1 with the lab laptop's sshd port and, by
    default, its host key; the worker logs in with the lab's key. Returns its access."""
    with boot.db.session() as s:
        sites.update_settings(
            s, "PAR", SiteSettingsUpdate(worker_key_path=str(laptop.client_key_path))
        )
    with pe_client(boot.db, address="127.0.0.1") as local:
        r = register(
            local,
            boot.credential,
            "ACME0001",
            address="127.0.0.1",
            ssh_port=laptop.ssh_port,
            host_key=host_key or public_line(laptop.dir / "sshd" / "ssh_host_ed25519_key"),
        )
        assert r.status_code == 200, r.text
    return access(boot.db, "ACME0001")


def test_after_a_re_registration_only_the_new_host_key_is_trusted(
    boot: Boot, lab: Lab, tmp_path: Path
) -> None:
    """The lab laptop's sshd presents its own key. Registered with it, the worker gets
    in; re-registered after a reboot with a new key (a new boot), the sshd that still
    presents the old key is refused by paramiko and by the system ssh client alike."""
    (laptop,) = lab.up_n(1, serial_prefix="ACME")
    assert laptop.serial == "ACME0001"
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    old_key = public_line(laptop.dir / "sshd" / "ssh_host_ed25519_key")
    first = _register_lab_laptop(boot, laptop)
    t = SSHTransport(first.endpoint)
    try:
        assert t.run("echo in-the-pe", timeout=30).stdout.strip() == "in-the-pe"
    finally:
        t.close()
    new_key = generate_ed25519(tmp_path / "reboot" / "host_key", "root@pe")
    second = _register_lab_laptop(boot, laptop, host_key=new_key)
    assert second.endpoint.known_hosts_path != first.endpoint.known_hosts_path
    assert new_key.split()[1] in second.endpoint.known_hosts_path.read_text()
    assert old_key.split()[1] not in second.endpoint.known_hosts_path.read_text()
    t = SSHTransport(second.endpoint)
    try:
        with pytest.raises(HostKeyMismatch):
            t.run("echo never", timeout=30)
    finally:
        t.close()
    ep = second.endpoint
    cli = subprocess.run(
        [
            "ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={ep.known_hosts_path}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-i", str(ep.key_path), "-p", str(ep.port), f"{ep.user}@{ep.host}", "echo never",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 255 and "Host key verification failed" in cli.stderr
    assert "never" not in cli.stdout


def test_the_reboot_through_the_pe_returns_once_the_laptop_left_it(boot: Boot, lab: Lab) -> None:
    """The PE's ``reboot`` (the lab's: the laptop boots its installed OS, with a new boot
    id): the step returns once the laptop runs another boot. A PE whose reboot does
    nothing is not taken for rebooted: the step times out (retryable)."""
    (laptop,) = lab.up_n(1, serial_prefix="ACME")
    scan(boot.db, "ACME0001", boot.bench.id or 0)
    pe = _register_lab_laptop(boot, laptop)
    control = registry.get("registered")
    stuck = replace(pe, options={**pe.options, "reboot_command": "true"})
    opened: list[SSHTransport] = []

    def connect(access: PeAccess) -> SSHTransport:
        opened.append(SSHTransport(access.endpoint))
        return opened[-1]

    try:
        with pytest.raises(CommandTimedOut, match="did not reboot within 3 s") as e:
            control.reboot_into_os(stuck, lambda: connect(stuck), timeout=3)
        assert e.value.retryable
        assert lab.get(laptop.name).boot == "pe"
        control.reboot_into_os(pe, lambda: connect(pe), timeout=120)
    finally:
        for t in opened:
            t.close()
    # It returned once the PE was gone; the lab finishes booting the installed OS.
    from tests.support.waiting import eventually

    eventually(lambda: lab.get(laptop.name).boot == "os", message="the laptop never booted")


# The installed system's host key, recorded in the run (the database), not in a worker.
class _PeWithItsLinuxMounted:
    """The PE side of the reboot step, for a PE that has the installed Linux mounted:
    what ``seal.py``'s scripts print there. A real one needs a VM laptop
    (tests/lab/test_vm_e2e.py runs the scripts in the PE and pins the key it prints);
    here the subject is where the worker keeps that key, and who finds it."""

    def __init__(self, os_key: str) -> None:
        self.os_key = os_key

    def run(self, cmd: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        script = (stdin or b"").decode()
        if script == seal.MOUNT_SCRIPT:
            return CommandResult(0, "mounted vda1\n", "")
        if script == seal.SEAL_SCRIPT:
            return CommandResult(0, f"hostkey {self.os_key}\npackages none\n", "")
        # The offline files, the reboot; the kernel's boot id unknown (""): nothing to
        # compare after the reboot, as on a PE that cannot tell.
        return CommandResult(0, "", "")

    def put_stream(self, *args: object, **kwargs: object) -> StreamResult:
        raise AssertionError("the reboot step streams nothing")

    def close(self) -> None:
        pass


def _use_data_dir(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(path))
    get_settings.cache_clear()


def _step_context(db: Database, run_id: int, *, worker: str, step: str, tmp: Path) -> StepContext:
    """What worker ``worker``'s engine hands ``step`` of the run, once it has claimed it
    (a resumption when another worker had it) and saved the step about to run."""
    index = STEP_NAMES.index(step)
    builder = ContextBuilder(
        db,
        engine_config(tmp / worker, worker_id=worker),
        shares=SiteShares(db, interval=1.0, stop=threading.Event(), owns=lambda run: True),
        waves=None,
        cancelled=lambda run_id: False,
    )
    with db.session() as s:
        run = repository.get_run_for_update(s, run_id)
        assert run is not None
        now = utcnow()
        lifecycle.claim(s, run, worker_id=worker, lease_until=now + timedelta(minutes=5), now=now)
        run.step_index, run.step_name = index, step
        run.context = {**run.context, "disk": {"name": "vda", "size": 1 << 30, "removable": False}}
        s.add(run)
        d = s.get(Device, run.device_id)
        assert d is not None
        return builder.build(s, run, d, step_at(index))


def test_a_run_resumed_by_another_worker_with_an_empty_data_dir_pins_the_sealed_key(
    boot: Boot, pe: TestClient, queued: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker w1 seals the installed Linux and reboots the laptop; w2, on another host
    (a data directory that never saw w1's), configures it: it pins the key the PE
    generated in the installed system, from the run's record in the database."""
    boot_id = register(pe, boot.credential, "ACME0001").json()["boot_id"]
    os_key = " ".join(HOST_KEY_2.split()[:2])  # the installed system's, not the PE's
    _use_data_dir(monkeypatch, tmp_path / "w1-data")
    ctx = _step_context(boot.db, queued, worker="w1", step="reboot", tmp=tmp_path)
    ctx.transport_factory = lambda access: _PeWithItsLinuxMounted(os_key)
    assert step_offline_and_reboot(ctx)["rebooted"] is True
    record = _run(boot.db, queued).context[SEALED_OS]
    assert record == {"pe_boot": boot_id, "host_key": os_key, "package_manager": False}
    # The laptop left its PE (its registration ends) and is configured next: by w2.
    d = device(boot.db, "ACME0001")
    with boot.db.session() as s:
        assert end_boot(s, d.id or 0, reason="rebooted into its installed OS")
        locked = s.get(Device, d.id)
        assert locked is not None
        for event in (Event.IMAGE, Event.CONFIGURE):
            device_lifecycle.apply(s, locked, event, actor="test")
    shutil.rmtree(tmp_path / "w1-data")
    _use_data_dir(monkeypatch, tmp_path / "w2-data")
    target, _ = _step_context(
        boot.db, queued, worker="w2", step="configure", tmp=tmp_path
    ).plan_loader()
    assert target.known_hosts_path is not None
    assert target.known_hosts_path.is_relative_to(tmp_path / "w2-data")
    assert target.known_hosts_path.read_text() == f"{PE_ADDRESS} {os_key}\n"
    assert (target.host, target.ssh_port) == (PE_ADDRESS, 22)
    assert target.target_root == "/"  # no package manager in it: marker mode
    # A record of another boot of the laptop is never taken for this one's.
    assert seal.from_record(record, boot_id) is not None
    assert seal.from_record(record, boot_id + 1) is None
    assert seal.from_record({**record, "host_key": "ssh-rsa nope"}, boot_id) is None
