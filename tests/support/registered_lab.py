"""A lab laptop whose PE registers itself: the set-up shared by the tests of the
``registered`` boot control with real parts (tests/provisioning/bootcontrol/).

What they all need, once: PAR's worker key (the private half on the worker, the public
half handed to every PE that registers at PAR), ACME's Linux image published with its
configuration, one lab laptop ACME0001 (its own sshd on 127.0.0.1) whose sshd host key is
where the agent reads it, and the real agent started on that laptop's fake root against
the real API. Used with the ``boot`` fixture (tests/boot/conftest.py) and the ``lab``
fixture of tests/provisioning/bootcontrol/conftest.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import select

from boot.registration import sites
from boot.registration.schemas import SiteSettingsUpdate
from inventory.models import Device
from inventory.states import DeviceState
from lab.keys import generate_ed25519
from lab.lab import Lab, LabLaptop
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.boot.conftest import Boot
from tests.support.agent import AgentRun, install_agent
from tests.support.harness import LINUX_CONFIG, activate_config, local_store, publish_image
from tests.support.images import GeneratedImage, make_image
from tests.support.waiting import eventually

SERIAL = "ACME0001"


@dataclass(frozen=True)
class RegisteredLab:
    image: GeneratedImage
    worker_key: Path
    laptop: LabLaptop


def site_worker_key(
    boot: Boot,
    tmp: Path,
    *,
    heartbeat_seconds: int | None = None,
    silence_seconds: int | None = None,
) -> Path:
    """A fresh worker key for PAR, which the lab's sshd knows nothing of: only what a
    registered PE is given (its go answer) lets the worker in. The PE heartbeat and
    silence limits change only where given."""
    key = tmp / "worker" / "id_ed25519"
    generate_ed25519(key, "worker@par")
    with boot.db.session() as s:
        sites.update_settings(
            s,
            "PAR",
            SiteSettingsUpdate(
                worker_key_path=str(key),
                heartbeat_seconds=heartbeat_seconds,
                silence_seconds=silence_seconds,
            ),
        )
    return key


@contextmanager
def registered_lab(
    boot: Boot, lab: Lab, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, silence_seconds: int
) -> Iterator[RegisteredLab]:
    """Everything above, with the image store and data directory under ``tmp`` while the
    block runs; heartbeats every 2 s, a PE silent for ``silence_seconds`` is not alive."""
    # The PE retries every second while it waits: more than the default per-address rate.
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with local_store(tmp, monkeypatch):
        acme = boot.world.acme.id
        assert acme is not None
        image = make_image(tmp / "img", mib=4)
        publish_image(boot.db, client_id=acme, image=image, os_family="linux")
        activate_config(boot.db, client_id=acme, body=LINUX_CONFIG)
        key = site_worker_key(boot, tmp, heartbeat_seconds=2, silence_seconds=silence_seconds)
        (laptop,) = lab.up_n(1, serial_prefix="ACME", disk_bytes=16 * 1024 * 1024)
        assert laptop.serial == SERIAL
        # The PE's fresh host key is where the agent reads it: the laptop's sshd's.
        etc_ssh = laptop.pe_root / "etc" / "ssh"
        etc_ssh.mkdir(parents=True)
        shutil.copy(laptop.dir / "sshd" / "ssh_host_ed25519_key.pub", etc_ssh)
        yield RegisteredLab(image=image, worker_key=key, laptop=laptop)


def start_agent(tmp: Path, laptop: LabLaptop, api: str, credential: str) -> AgentRun:
    """The real agent on the laptop's fake root, as the PE runs it (``--cmdline``: the
    kernel command line the iPXE script gives, with the lab sshd's port)."""
    cmdline = tmp / "cmdline"
    cmdline.write_text(
        "BOOT_IMAGE=/vmlinuz ip=dhcp "
        f"masterline.api={api} masterline.enroll={credential} masterline.bench=B1 "
        f"masterline.site=PAR masterline.ssh_port={laptop.ssh_port}\n"
    )
    bin_dir = tmp / "agent-bin"  # no disk tools: the inventory reports them unknown
    bin_dir.mkdir()
    cwd = install_agent(tmp / "opt" / "masterline")
    return AgentRun(cwd, laptop.pe_root, bin_dir, "--cmdline", str(cmdline))


def only_run(boot: Boot) -> ProvisioningRun:
    with boot.db.session(write=False) as s:
        return s.exec(select(ProvisioningRun)).one()


def finished_run(boot: Boot, *, timeout: float) -> ProvisioningRun:
    """The only run once it has succeeded or failed (``timeout`` bounds a hang)."""

    def still() -> str:
        run = only_run(boot)
        return f"run still {run.status} {run.step_name} {run.last_error}"

    def finished() -> ProvisioningRun | None:
        run = only_run(boot)
        return run if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None

    return eventually(finished, timeout=timeout, every=0.2, message=still)


def device_state(boot: Boot, serial: str = SERIAL) -> DeviceState:
    with boot.db.session(write=False) as s:
        return DeviceState(s.exec(select(Device).where(Device.serial == serial)).one().state)
