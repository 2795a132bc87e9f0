"""Registration through the real API, on both databases: go, wait, every refusal, the
per-boot token, and the pipeline's view of a laptop's current boot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlmodel import col, select

from boot.registration import service
from boot.registration.credentials import hash_secret
from boot.registration.models import BootStatus, PeBoot, RegistrationAttempt
from inventory import lifecycle
from inventory import repository as inventory_repo
from inventory.models import Device, DeviceEvent
from inventory.states import DeviceState, Event
from tests.boot.conftest import (
    HOST_KEY,
    HOST_KEY_2,
    PE_ADDRESS,
    WORKER_KEY,
    Boot,
    pe_client,
    register,
)
from tests.conftest import BACKENDS, auth
from tests.support.factories import create_devices


def scan(client: TestClient, boot: Boot, serial: str) -> None:
    r = client.post(
        "/scan", json={"code": serial, "bench_id": boot.bench.id}, headers=boot.technician
    )
    assert r.status_code == 200, r.text


def device(boot: Boot, serial: str) -> Device:
    with boot.db.session(write=False) as s:
        (found,) = inventory_repo.find_devices_by_code(s, serial)
        return found


def attempts(boot: Boot) -> list[RegistrationAttempt]:
    with boot.db.session(write=False) as s:
        return list(s.exec(select(RegistrationAttempt).order_by(col(RegistrationAttempt.id))).all())


def test_a_received_laptop_gets_a_go_with_a_per_boot_token(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    r = register(client, boot.credential, "acme0001 ")  # normalised as scan-in does
    assert r.status_code == 200, r.text
    go = r.json()
    assert go["status"] == "go"
    assert go["authorized_keys"] == [WORKER_KEY]
    assert go["heartbeat_seconds"] == 2
    assert go["agent_token"].startswith("mla_")
    laptop = device(boot, "ACME0001")
    assert laptop.id is not None and go["device_id"] == laptop.id
    # Only built-in NICs become the device's MACs: a USB adapter moves between laptops.
    assert laptop.mac_addresses == ["3c:52:82:0a:1b:2c"]
    with boot.db.session(write=False) as s:
        row = s.get(PeBoot, go["boot_id"])
        assert row is not None
        assert row.token_hash == hash_secret(go["agent_token"])
        assert go["agent_token"] not in repr(row.__dict__)
        view = service.current_boot(s, laptop.id)
    assert view is not None
    assert (view.address, view.ssh_port, view.host_key) == (PE_ADDRESS, 22, HOST_KEY)
    assert view.alive and view.boot_id == go["boot_id"]
    assert view.known_hosts_line() == f"{PE_ADDRESS} {' '.join(HOST_KEY.split()[:2])}\n"

    hb = client.post("/boot/heartbeat", json={"status": "idle"}, headers=auth(go["agent_token"]))
    assert hb.status_code == 200, hb.text
    assert hb.json() == {"action": "none", "heartbeat_seconds": 2}


def test_booted_before_scan_in_waits_visibly_then_goes(client: TestClient, boot: Boot) -> None:
    r = register(client, boot.credential, "ACME0002")
    assert r.status_code == 202, r.text
    wait = r.json()
    assert (wait["status"], wait["reason"], wait["retry_seconds"]) == (
        "wait",
        "booted, not scanned",
        1,
    )
    assert "agent_token" not in wait
    listed = client.get("/boot/pes", params={"status": "waiting"}, headers=boot.technician)
    assert [(p["serial"], p["wait_reason"]) for p in listed.json()["items"]] == [
        ("ACME0002", "booted, not scanned")
    ]
    # Retrying while waiting is the same boot, not a new row.
    assert register(client, boot.credential, "ACME0002").json()["boot_id"] == wait["boot_id"]
    assert device(boot, "ACME0002").state == DeviceState.EXPECTED  # registration wrote nothing

    scan(client, boot, "ACME0002")
    go = register(client, boot.credential, "ACME0002")
    assert go.status_code == 200, go.text
    assert go.json()["boot_id"] == wait["boot_id"]
    assert (
        client.get("/boot/pes", params={"status": "waiting"}, headers=boot.technician).json()[
            "items"
        ]
        == []
    )


def test_refusals_are_recorded_for_the_supervisor(client: TestClient, boot: Boot) -> None:
    r = register(client, boot.credential, "NOSUCH01")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == "unknown_serial"
    register(client, boot.credential, "NOSUCH01")
    (attempt,) = attempts(boot)
    # A PE that keeps retrying bumps one record instead of flooding the table.
    assert (attempt.serial, attempt.reason, attempt.count, attempt.peer_address) == (
        "NOSUCH01",
        "unknown_serial",
        2,
        PE_ADDRESS,
    )
    listed = client.get("/boot/attempts", headers=boot.technician).json()["items"]
    assert [(a["serial"], a["reason"], a["count"]) for a in listed] == [
        ("NOSUCH01", "unknown_serial", 2)
    ]


def test_a_laptop_of_another_site_is_refused(client: TestClient, boot: Boot) -> None:
    # Received at Lyon: a Paris bench credential may not register it.
    r = client.post(
        "/scan",
        json={"code": "ACME0001", "bench_id": boot.lyon_bench.id},
        headers=boot.technician,
    )
    assert r.status_code == 200
    refused = register(client, boot.credential, "ACME0001")
    assert refused.status_code == 403
    assert refused.json()["reason"] == "other_site"
    assert "device_id" not in refused.json()
    assert register(client, boot.lyon_credential, "ACME0001").status_code == 200
    assert [a.reason for a in attempts(boot)] == ["other_site"]


def test_an_expected_laptop_staged_at_another_site_is_refused(
    client: TestClient, boot: Boot
) -> None:
    delivery = boot.world.globex_delivery.id
    # Unstaged, an expected laptop may be received at any site: it waits.
    assert register(client, boot.credential, "GLBX0001").status_code == 202
    r = client.put(
        f"/boot/deliveries/{delivery}/site", json={"site_code": "LYO"}, headers=boot.admin
    )
    assert r.status_code == 200, r.text
    refused = register(client, boot.credential, "GLBX0001")
    assert (refused.status_code, refused.json()["reason"]) == (403, "other_site")
    assert register(client, boot.lyon_credential, "GLBX0001").status_code == 202


def test_a_client_bound_credential_refuses_another_clients_laptop(
    client: TestClient, boot: Boot
) -> None:
    created = client.post(
        "/boot/credentials",
        json={"name": "ACME wave", "site_code": "PAR", "bench_code": "B1", "client_code": "ACME"},
        headers=boot.admin,
    ).json()
    scan(client, boot, "GLBX0001")
    scan(client, boot, "ACME0001")
    refused = register(client, created["credential"], "GLBX0001")
    assert (refused.status_code, refused.json()["reason"]) == (403, "other_client")
    assert register(client, created["credential"], "ACME0001").status_code == 200


def test_states_that_must_not_be_imaged_are_refused(client: TestClient, boot: Boot) -> None:
    for serial, event in (("ACME0001", Event.QUARANTINE), ("ACME0002", Event.RECEIVE)):
        with boot.db.session() as s:
            d = inventory_repo.get_device_for_update(s, device(boot, serial).id or 0)
            assert d is not None
            lifecycle.apply(s, d, event, actor="test")
            if serial == "ACME0002":  # walk it to READY
                for e in (Event.QUEUE, Event.IMAGE, Event.CONFIGURE, Event.VERIFY, Event.DONE):
                    lifecycle.apply(s, d, e, actor="test")
    for serial, state in (("ACME0001", "quarantined"), ("ACME0002", "ready")):
        r = register(client, boot.credential, serial)
        assert r.status_code == 409, r.text
        assert (r.json()["reason"], r.json()["current_state"]) == ("not_imageable", state)


def test_identity_is_cross_checked_with_uuid_and_vendor(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    uuid = "4C4C4544-0042-3510-8052-B4C04F4E5331"
    assert register(client, boot.credential, "ACME0001", smbios_uuid=uuid).status_code == 200
    assert device(boot, "ACME0001").smbios_uuid == uuid.lower()  # learnt from the PE
    other = register(
        client, boot.credential, "ACME0001", smbios_uuid="4c4c4544-0000-0000-0000-000000000001"
    )
    assert (other.status_code, other.json()["reason"]) == (409, "identity_mismatch")
    vendor = register(client, boot.credential, "ACME0001", vendor="LENOVO")
    assert (vendor.status_code, vendor.json()["reason"]) == (409, "identity_mismatch")
    # DMI's spelling of the delivery's vendor is the same maker.
    assert register(client, boot.credential, "ACME0001", vendor="DELL").status_code == 200


# Decided before any database rule (validation, in-memory limits): one backend.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_a_placeholder_serial_is_refused(client: TestClient, boot: Boot) -> None:
    r = register(client, boot.credential, "To Be Filled By O.E.M.")
    assert (r.status_code, r.json()["reason"]) == (422, "invalid")


def test_the_declared_address_must_be_the_one_seen(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    r = register(client, boot.credential, "ACME0001", address="10.20.0.99")
    assert (r.status_code, r.json()["reason"]) == (409, "address_mismatch")
    ok = client.patch(
        "/boot/sites/PAR/settings", json={"allow_address_mismatch": True}, headers=boot.admin
    )
    assert ok.status_code == 200
    assert register(client, boot.credential, "ACME0001", address="10.20.0.99").status_code == 200
    with boot.db.session(write=False) as s:
        view = service.current_boot(s, device(boot, "ACME0001").id or 0)
    assert view is not None and view.address == "10.20.0.99"


def test_revocation_is_effective_at_once_and_recorded(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    assert register(client, boot.credential, "ACME0001").status_code == 200
    r = client.delete(f"/boot/credentials/{boot.credential_id}", headers=boot.admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    refused = register(client, boot.credential, "ACME0001")
    assert refused.status_code == 401
    assert refused.json()["reason"] == "credential"
    assert [(a.reason, a.credential_id) for a in attempts(boot)] == [
        ("revoked_credential", boot.credential_id)
    ]
    # A made-up credential is refused the same way, and not recorded (noise).
    assert register(client, "mle_" + "x" * 43, "ACME0001").status_code == 401
    assert len(attempts(boot)) == 1


def test_an_expired_credential_is_refused(client: TestClient, boot: Boot) -> None:
    created = client.post(
        "/boot/credentials",
        json={"name": "short", "site_code": "PAR", "expires_in_days": 1},
        headers=boot.admin,
    ).json()
    scan(client, boot, "ACME0001")
    assert register(client, created["credential"], "ACME0001").status_code == 200
    with boot.db.session() as s:
        from boot.registration.models import EnrollmentCredential

        row = s.get(EnrollmentCredential, created["id"])
        assert row is not None and row.expires_at is not None
        row.expires_at = row.created_at - timedelta(seconds=1)
        s.add(row)
    assert register(client, created["credential"], "ACME0001").status_code == 401


def test_a_new_boot_revokes_the_previous_token(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    first = register(client, boot.credential, "ACME0001").json()
    assert client.post("/boot/heartbeat", headers=auth(first["agent_token"])).status_code == 200
    # The laptop boots again: a fresh host key, a new boot, a new token.
    second = register(client, boot.credential, "ACME0001", host_key=HOST_KEY_2).json()
    assert second["boot_id"] != first["boot_id"]
    replay = client.post("/boot/heartbeat", headers=auth(first["agent_token"]))
    assert replay.status_code == 401
    assert replay.json()["reason"] == "agent_token"
    assert client.post("/boot/heartbeat", headers=auth(second["agent_token"])).status_code == 200
    with boot.db.session(write=False) as s:
        old = s.get(PeBoot, first["boot_id"])
        assert old is not None and old.status == BootStatus.ENDED and old.token_hash is None
        view = service.current_boot(s, second["device_id"])
    assert view is not None and view.host_key == HOST_KEY_2


def test_an_agent_restarted_in_the_same_boot_keeps_the_boot_with_a_new_token(
    client: TestClient, boot: Boot
) -> None:
    scan(client, boot, "ACME0001")
    first = register(client, boot.credential, "ACME0001").json()
    again = register(client, boot.credential, "ACME0001").json()
    assert again["boot_id"] == first["boot_id"]
    assert again["agent_token"] != first["agent_token"]
    assert client.post("/boot/heartbeat", headers=auth(first["agent_token"])).status_code == 401
    assert client.post("/boot/heartbeat", headers=auth(again["agent_token"])).status_code == 200


def test_silence_and_expiry_as_the_pipeline_sees_them(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    go = register(client, boot.credential, "ACME0001").json()
    with boot.db.session(write=False) as s:
        view = service.current_boot(s, go["device_id"])
        assert view is not None and view.alive
        silent = service.current_boot(
            s, go["device_id"], now=view.last_heartbeat + timedelta(seconds=6)
        )
        assert silent is not None and not silent.alive  # PAR: silence_seconds=5
        assert silent.silent_for == timedelta(seconds=6)
        expired = service.current_boot(s, go["device_id"], now=view.token_expires_at)
        assert expired is None
    with boot.db.session() as s:
        assert service.end_boot(s, go["device_id"], reason="rebooted into its OS")
    assert client.post("/boot/heartbeat", headers=auth(go["agent_token"])).status_code == 401
    with boot.db.session(write=False) as s:
        assert service.current_boot(s, go["device_id"]) is None


def test_heartbeat_carries_the_requested_action(client: TestClient, boot: Boot) -> None:
    scan(client, boot, "ACME0001")
    go = register(client, boot.credential, "ACME0001").json()
    r = client.post(
        f"/boot/pes/{go['boot_id']}/action", json={"action": "poweroff"}, headers=boot.technician
    )
    assert r.status_code == 200, r.text
    hb = client.post("/boot/heartbeat", headers=auth(go["agent_token"]))
    assert hb.json()["action"] == "poweroff"
    assert (
        client.post(
            "/boot/pes/999999/action", json={"action": "reboot"}, headers=boot.technician
        ).status_code
        == 404
    )


def test_a_site_without_a_worker_key_makes_the_pe_wait(client: TestClient, boot: Boot) -> None:
    with boot.db.session() as s:
        from boot.registration.models import BootSiteSettings

        row = s.get(BootSiteSettings, boot.bench.site_id)
        assert row is not None
        row.worker_public_keys = []
        s.add(row)
    scan(client, boot, "ACME0001")
    r = register(client, boot.credential, "ACME0001")
    assert (r.status_code, r.json()["reason"]) == (202, "no worker key")


def test_registration_is_scan_in_when_the_site_says_so(client: TestClient, boot: Boot) -> None:
    r = client.patch(
        "/boot/sites/PAR/settings", json={"registration_is_scan_in": True}, headers=boot.admin
    )
    assert r.status_code == 200 and r.json()["registration_is_scan_in"] is True
    go = register(client, boot.credential, "ACME0001")
    assert go.status_code == 200, go.text
    laptop = device(boot, "ACME0001")
    assert laptop.state == DeviceState.RECEIVED and laptop.bench_id == boot.bench.id
    assert laptop.slot == 1
    # An unknown serial follows the bench's UNEXPECTED rule, and waits to be attached.
    unknown = register(client, boot.credential, "STRAY0001", host_key=HOST_KEY_2)
    assert (unknown.status_code, unknown.json()["reason"]) == (202, "unexpected")
    stray = device(boot, "STRAY0001")
    assert stray.state == DeviceState.UNEXPECTED and stray.bench_id == boot.bench.id
    with boot.db.session(write=False) as s:
        events = s.exec(select(DeviceEvent).where(DeviceEvent.device_id == stray.id)).all()
    assert [(e.event, e.actor) for e in events] == [
        ("discover", f"technician:pe-credential-{boot.credential_id}")
    ]


def test_a_serial_shared_by_two_vendors_is_told_apart_by_vendor(
    client: TestClient, boot: Boot
) -> None:
    with boot.db.session() as s:
        from tests.support.factories import create_delivery

        hp = create_delivery(s, client=boot.world.acme, order="PO-HP", vendor="HP")
        create_devices(s, delivery=hp, serials=["ACME0001"], model="EliteBook 840")
    scan_r = client.post(
        "/scan", json={"code": "ACME0001", "bench_id": boot.bench.id}, headers=boot.technician
    )
    assert scan_r.status_code == 409  # scan-in cannot tell them apart either
    r = register(client, boot.credential, "ACME0001", vendor="HP")
    assert (r.status_code, r.json()["reason"]) == (202, "booted, not scanned")
    ambiguous = register(client, boot.credential, "ACME0001", vendor=None)
    assert (ambiguous.status_code, ambiguous.json()["reason"]) == (409, "ambiguous_serial")


# Decided before any database rule (validation, in-memory limits): one backend.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_bad_bodies_get_one_clear_error_and_echo_nothing(client: TestClient, boot: Boot) -> None:
    secretish = "hunter2-do-not-echo"
    r = client.post(
        "/boot/register",
        json={"serial": "ACME0001", "address": PE_ADDRESS, "host_key": secretish},
        headers=auth(boot.credential),
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("host_key:")
    assert secretish not in r.text
    assert (
        client.post(
            "/boot/register", content=b"{not json", headers=auth(boot.credential)
        ).status_code
        == 422
    )
    big = client.post("/boot/register", content=b"x" * (300 * 1024), headers=auth(boot.credential))
    assert big.status_code == 413
    assert attempts(boot) == []  # nothing half-written


# Decided before any database rule (validation, in-memory limits): one backend.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_the_peer_address_limit_answers_429_with_retry_after(boot: Boot) -> None:
    with pe_client(boot.db, per_address="2/minute") as limited:
        codes = [register(limited, boot.credential, "NOSUCH01").status_code for _ in range(3)]
        assert codes == [404, 404, 429]
        r = register(limited, boot.credential, "NOSUCH01")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/problem+json")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["reason"] == "rate_limited"
        # Before any database work: a guessed credential is limited the same way.
        assert register(limited, "mle_guess", "NOSUCH01").status_code == 429


# Decided before any database rule (validation, in-memory limits): one backend.
@pytest.mark.parametrize("backend", BACKENDS[:1])
def test_the_credential_limit_spans_addresses(boot: Boot) -> None:
    app_limits = {"per_credential": "2/minute"}
    with pe_client(boot.db, **app_limits) as first:
        shared = first.app.state.boot_rate_limits  # type: ignore[attr-defined]
        with pe_client(boot.db, address="10.20.0.58") as second:
            second.app.state.boot_rate_limits = shared  # type: ignore[attr-defined]
            assert register(first, boot.credential, "NOSUCH01").status_code == 404
            body = {"address": "10.20.0.58"}
            assert register(second, boot.credential, "NOSUCH01", **body).status_code == 404
            assert register(second, boot.credential, "NOSUCH01", **body).status_code == 429
            # Another bench's credential is not affected.
            assert register(second, boot.lyon_credential, "NOSUCH01", **body).status_code == 404


def test_the_keys_handed_to_pes_always_include_the_workers_own(
    client: TestClient, boot: Boot, tmp_path: Path
) -> None:
    """The worker logs into PEs with worker_key_path; PEs let in worker_public_keys. A
    change that would let the two disagree is refused, so no laptop fails later on an
    opaque authentication error."""
    own = tmp_path / "worker_ed25519"
    own.with_suffix(".pub").write_text(HOST_KEY + "\n")
    other = tmp_path / "rotated_ed25519"
    other.with_suffix(".pub").write_text(HOST_KEY_2 + "\n")
    url = "/boot/sites/PAR/settings"

    def patch(body: dict[str, object]) -> Response:
        return client.patch(url, json=body, headers=boot.admin)

    def keys(r: Response) -> list[str]:
        assert r.status_code == 200, r.text
        return [" ".join(k.split()[:2]) for k in r.json()["worker_public_keys"]]

    short = [" ".join(k.split()[:2]) for k in (HOST_KEY, HOST_KEY_2, WORKER_KEY)]
    # A key path joins the keys already handed out (another host's worker keeps its own).
    assert keys(patch({"worker_key_path": str(own)})) == [short[0], short[2]]
    # A list without the worker's own key: one clear error, nothing changed.
    r = patch({"worker_public_keys": [WORKER_KEY]})
    assert r.status_code == 422 and "worker_key_path" in r.json()["detail"]
    assert keys(client.get(url, headers=boot.admin)) == [short[0], short[2]]
    # A list with it is taken as given, the worker's own key first.
    assert keys(patch({"worker_public_keys": [WORKER_KEY, HOST_KEY]})) == [short[0], short[2]]
    # Rotating the key path drops the old path's key and keeps the others.
    assert keys(patch({"worker_key_path": str(other)})) == [short[1], short[2]]
    # Both in one change: the path's key is added to the list.
    body: dict[str, object] = {"worker_key_path": str(own), "worker_public_keys": [WORKER_KEY]}
    assert keys(patch(body)) == [short[0], short[2]]
    # An empty list is a deliberate pause, not a disagreement: PEs will wait.
    assert keys(patch({"worker_public_keys": []})) == []
