"""Which boot control a laptop gets, and the static one's answers, on a real database
and no lab: a new kind of laptop is one more registered implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from core.db import Database
from inventory.models import Device
from provisioning.bootcontrol import registry
from provisioning.bootcontrol.base import PeAccess
from provisioning.bootcontrol.static import StaticBootControl
from provisioning.configure.plan import OsFamily, OsTarget
from provisioning.errors import CommandFailed
from provisioning.runs import service
from provisioning.runs.schemas import EndpointCreate
from provisioning.transports.base import SshEndpoint, Transport
from tests.support.factories import World


class Registered(StaticBootControl):
    """A stand-in for a PE that registers itself: it answers where it said it would."""

    name = "registered-test"

    def pe_access(self, session: Session, device: Device) -> PeAccess:
        return PeAccess(control=self.name, endpoint=_endpoint(f"10.9.0.{device.slot}"))

    def reboot_into_os(
        self, pe: PeAccess, connect: Callable[[], Transport], *, timeout: float
    ) -> None:
        raise AssertionError("not rebooted in this test")


def _endpoint(host: str) -> SshEndpoint:
    return SshEndpoint(host, 22, "root", Path("/k"), Path("/kh"))


@pytest.fixture
def device(db: Database, world: World) -> Iterator[Device]:
    with db.session() as s:
        d = s.exec(select(Device).where(Device.serial == "ACME0001")).one()
        d.bench_id, d.slot = world.bench.id, 3
        s.add(d)
    with db.session(write=False) as s:
        yield s.exec(select(Device).where(Device.serial == "ACME0001")).one()


def _wire(db: Database, world: World, **options: object) -> None:
    with db.session() as s:
        service.register_endpoint(
            s,
            EndpointCreate(
                bench_id=world.bench.id or 0,
                slot=3,
                host="192.0.2.7",
                ssh_port=2222,
                key_path="/etc/masterline/bench.key",
                known_hosts_path="/etc/masterline/known_hosts",
                options=dict(options),
            ),
        )


def test_a_wired_slot_uses_the_static_control_and_its_pinned_host_key(
    db: Database, world: World, device: Device
) -> None:
    _wire(db, world, os_host="192.0.2.8", winrm_port=5986)
    with db.session(write=False) as s:
        control = registry.select(s, device)
        pe = control.pe_access(s, device)
        target = control.os_target(s, device, pe, OsFamily.LINUX)
    assert control.name == "static" and pe.control == "static"
    assert (pe.endpoint.host, pe.endpoint.port) == ("192.0.2.7", 2222)
    assert str(pe.endpoint.known_hosts_path) == "/etc/masterline/known_hosts"
    assert isinstance(target, OsTarget) and target.host == "192.0.2.8"
    assert not control.in_installed_os(pe)


def test_a_slot_names_another_registered_control(
    db: Database, world: World, device: Device
) -> None:
    registry.register(Registered())
    _wire(db, world, boot_control="registered-test")
    with db.session(write=False) as s:
        control = registry.select(s, device)
        assert control.pe_access(s, device).endpoint.host == "10.9.0.3"


@pytest.mark.usefixtures("static_default")
def test_an_unknown_control_or_an_unwired_slot_is_one_clear_error(
    db: Database, world: World, device: Device
) -> None:
    _wire(db, world, boot_control="nobody-registered-this")
    with db.session(write=False) as s, pytest.raises(CommandFailed) as e:
        registry.select(s, device)
    assert "no boot control named 'nobody-registered-this'" in e.value.message
    moved = device.model_copy(update={"slot": 9})
    with db.session(write=False) as s, pytest.raises(CommandFailed) as e:
        registry.select(s, moved).pe_access(s, moved)
    assert "no provisioning-environment address for bench slot" in e.value.message
