"""What registration puts on a bench's kernel command line: its enrollment credential
(decrypted from the netboot copy), the bench's own before its site's, never a revoked
or USB-only one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from boot.registration.netboot import enrollment_kernel_args
from tests.boot.conftest import Boot


def test_the_bench_credential_goes_on_its_kernel_command_line(
    client: TestClient, boot: Boot
) -> None:
    with boot.db.session(write=False) as s:
        assert enrollment_kernel_args(s, boot.bench) == {"masterline.enroll": boot.credential}

    def create(**body: object) -> dict[str, object]:
        r = client.post("/boot/credentials", json={"site_code": "PAR", **body}, headers=boot.admin)
        assert r.status_code == 201, r.text
        return r.json()

    usb_only = create(name="stick", bench_code="B1", netboot=False)
    site_wide = create(name="PAR site")
    newer = create(name="B1 wave 2", bench_code="B1")
    assert usb_only["netboot"] is False and newer["netboot"] is True
    with boot.db.session(write=False) as s:
        assert enrollment_kernel_args(s, boot.bench) == {"masterline.enroll": newer["credential"]}
    for revoked in (newer["id"], boot.credential_id):
        assert client.delete(f"/boot/credentials/{revoked}", headers=boot.admin).status_code == 200
    with boot.db.session(write=False) as s:
        # The bench has no live netboot credential left: its site's is served.
        assert enrollment_kernel_args(s, boot.bench) == {
            "masterline.enroll": site_wide["credential"]
        }
    assert (
        client.delete(f"/boot/credentials/{site_wide['id']}", headers=boot.admin).status_code == 200
    )
    with boot.db.session(write=False) as s:
        assert enrollment_kernel_args(s, boot.bench) == {}
