"""Network boot served by Masterline: the bench's iPXE script (API address, bench, the
enrollment credential from registration's provider), the PE's files behind the same
link, links that are forged, stale (credential revoked) or from outside the bench
networks, and ``masterline boot dnsmasq-config`` checked by dnsmasq itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from boot.netboot import service
from boot.netboot.config import get_netboot_settings
from boot.pe import repository
from boot.registration import credentials
from tests.boot.conftest import Boot, pe_client

VERSION = "6.1.0-99-amd64-0123456789ab"


def fake_pe(tmp_path: Path) -> dict[str, bytes]:
    """A stored PE version (the real build is tested in tests/boot/pe/)."""
    build = tmp_path / "fake-pe"
    build.mkdir()
    files = {repository.KERNEL: b"kernel" * 1000, repository.INITRD: b"initrd" * 3000}
    for name, data in files.items():
        (build / name).write_bytes(data)
    manifest = {
        "version": VERSION,
        "built_at": "2026-12-02T00:00:00+00:00",
        "files": {n: {"sha256": "0" * 64, "size": len(d)} for n, d in files.items()},
    }
    repository.store(build, manifest, make_current=True)
    return files


def link_of(boot: Boot, bench_id: int | None = None) -> str:
    with boot.db.session(write=False) as s:
        bench = s.get(type(boot.bench), bench_id or boot.bench.id)
        assert bench is not None
        return service.bench_boot(s, bench).link


def test_the_script_chains_to_the_pe_with_the_api_bench_and_credential(
    boot: Boot, client: TestClient, tmp_path: Path
) -> None:
    files = fake_pe(tmp_path)
    link = link_of(boot)
    got = client.get(f"/boot/ipxe/{link}")
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    script = got.text
    assert script.startswith("#!ipxe\n")
    kernel = re.search(r"^kernel (\S+) (.*)$", script, re.M)
    initrd = re.search(r"^initrd --name initrd.img (\S+)$", script, re.M)
    assert kernel and initrd and script.rstrip().endswith("boot")
    args = dict(a.split("=", 1) for a in kernel.group(2).split() if "=" in a)
    assert args["masterline.enroll"] == boot.credential
    assert args["masterline.api"] == "http://testserver"
    assert args["masterline.bench"] == "B1" and args["masterline.site"] == "PAR"
    assert args["initrd"] == "initrd.img" and "ttyS0,115200" in kernel.group(2)
    assert kernel.group(1) == f"http://testserver/boot/ipxe/{link}/pe/{VERSION}/vmlinuz"
    for url, name in ((kernel.group(1), repository.KERNEL), (initrd.group(1), repository.INITRD)):
        served = client.get(url.removeprefix("http://testserver"))
        assert served.status_code == 200 and served.content == files[name]
    # Another stored version than the current one (a laptop mid-boot during an update).
    assert client.get(f"/boot/ipxe/{link}/pe/6.1.0-1-amd64-000000000000/vmlinuz").status_code == 404
    assert client.get(f"/boot/ipxe/{link}/pe/{VERSION}/pe.json").status_code == 404
    assert client.get(f"/boot/ipxe/{link}/pe/{VERSION}/..%2fcurrent").status_code == 404
    efi = client.get(f"/boot/ipxe/{link}/ipxe.efi")
    assert efi.status_code == 200 and efi.content[:2] == b"MZ"  # a PE/COFF executable
    assert efi.content == (get_netboot_settings().ipxe_dir / "ipxe.efi").read_bytes()
    # Debian's file, replaced by a package upgrade: no cache may keep it as immutable.
    assert "cache-control" not in efi.headers
    resumed = client.get(f"/boot/ipxe/{link}/ipxe.efi", headers={"Range": "bytes=1-2"})
    assert resumed.status_code == 206 and resumed.content == efi.content[1:3]


def test_forged_stale_and_foreign_links_get_one_404(
    boot: Boot, client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_pe(tmp_path)
    link = link_of(boot)
    lyon = link_of(boot, boot.lyon_bench.id)
    bench_id, token = link.split("-", 1)
    forged = [
        f"{bench_id}-{'A' * len(token)}",
        f"{boot.lyon_bench.id}-{token}",  # this bench's token on another bench
        f"{bench_id}-{lyon.split('-', 1)[1]}",
        f"999999-{token}",
        "1",
        token,
    ]
    for bad in forged:
        for path in (f"/boot/ipxe/{bad}", f"/boot/ipxe/{bad}/pe/{VERSION}/vmlinuz"):
            got = client.get(path)
            assert got.status_code == 404, (bad, got.status_code)
            assert boot.credential not in got.text
    assert client.get(f"/boot/ipxe/{lyon}").status_code == 200

    # Revoking the credential kills the link that revealed it: the script's URL follows
    # the credential (the dnsmasq configuration is generated again).
    with boot.db.session() as s:
        credentials.revoke_credential(s, boot.credential_id)
    assert client.get(f"/boot/ipxe/{link}").status_code == 404
    fresh = link_of(boot)
    assert fresh != link
    got = client.get(f"/boot/ipxe/{fresh}")
    assert got.status_code == 200 and boot.credential not in got.text

    # Only the bench networks, when they are set.
    monkeypatch.setenv("MASTERLINE_NETBOOT_NETWORKS", "192.168.77.0/24, 10.20.0.0/24")
    get_netboot_settings.cache_clear()
    try:
        assert client.get(f"/boot/ipxe/{fresh}").status_code == 200  # from 10.20.0.57
        with pe_client(boot.db, address="192.168.1.9") as office:
            assert office.get(f"/boot/ipxe/{fresh}").status_code == 404
    finally:
        get_netboot_settings.cache_clear()


def test_without_a_built_pe_the_script_says_so(boot: Boot, client: TestClient) -> None:
    got = client.get(f"/boot/ipxe/{link_of(boot)}")
    assert got.status_code == 200
    assert "masterline pe build" in got.text and "kernel" not in got.text


def dnsmasq_config(boot: Boot, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MASTERLINE_DATABASE_URL": boot.db.url, "COLUMNS": "200"}
    return subprocess.run(
        [".venv/bin/masterline", "boot", "dnsmasq-config", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_dnsmasq_config_for_proxy_dhcp_and_dhcp_passes_dnsmasq_test(
    boot: Boot, client: TestClient, tmp_path: Path
) -> None:
    fake_pe(tmp_path)
    common = ["--site", "PAR", "--bench", "B1", "--api-url", "http://10.20.0.1:8000/"]
    proxy = dnsmasq_config(boot, *common, "--interface", "eth1", "--subnet", "10.20.0.0/24")
    assert proxy.returncode == 0, proxy.stderr
    link = link_of(boot)
    url = f"http://10.20.0.1:8000/boot/ipxe/{link}"
    assert "dhcp-range=10.20.0.0,proxy,255.255.255.0" in proxy.stdout
    assert f'pxe-service=tag:ipxe,x86PC,"Masterline",{url}' in proxy.stdout
    assert 'pxe-service=tag:!ipxe,x86PC,"Masterline (BIOS)",undionly.kpxe' in proxy.stdout
    # A proxy does not answer UEFI HTTP boot (tests/boot/netboot/test_vm_uefi.py): the
    # file says what the site's DHCP server must answer instead.
    assert "dhcp-boot=tag:httpclient" not in proxy.stdout
    assert f"#   {url}/ipxe.efi" in proxy.stdout
    assert boot.credential not in proxy.stdout
    assert "\nlog-dhcp" not in proxy.stdout  # it would log the URL of every answer
    # The URL it names is the one the server answers.
    assert client.get(f"/boot/ipxe/{link}").status_code == 200

    out = tmp_path / "bench.conf"
    own = dnsmasq_config(
        boot, *common, "--interface", "eth1", "--subnet", "10.20.0.0/24",
        "--range", "10.20.0.100,10.20.0.199", "--router", "10.20.0.1", "-o", str(out),
    )  # fmt: skip
    assert own.returncode == 0, own.stderr
    text = out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    assert "dhcp-range=10.20.0.100,10.20.0.199,255.255.255.0,1h" in text
    assert "dhcp-boot=tag:!ipxe,tag:!httpclient,tag:!efi64,undionly.kpxe" in text
    assert f"dhcp-boot=tag:ipxe,{url}" in text
    assert f"dhcp-boot=tag:httpclient,tag:!ipxe,{url}/ipxe.efi" in text
    for conf in (text, proxy.stdout):
        path = tmp_path / "check.conf"
        path.write_text(conf)
        checked = subprocess.run(
            ["/usr/sbin/dnsmasq", "--test", f"--conf-file={path}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert checked.returncode == 0 and "syntax check OK" in checked.stderr, checked.stderr

    for bad, expect in (
        (["--subnet", "10.20.0.0/24", "--range", "10.30.0.1,10.30.0.9"], "not an ascending"),
        (["--subnet", "banana"], "not an IPv4 network"),
        (["--subnet", "10.20.0.0/24", "--router", "x"], "not an IPv4 address"),
    ):
        done = dnsmasq_config(boot, *common, "--interface", "eth1", *bad)
        assert done.returncode == 2 and expect in done.stdout + done.stderr, done
        assert "Traceback" not in done.stderr
    done = dnsmasq_config(
        boot, "--site", "PAR", "--bench", "B9", "--api-url", "http://x", "--interface", "e",
        "--subnet", "10.0.0.0/8",
    )  # fmt: skip
    assert done.returncode == 4 and "bench B9 of site PAR not found" in done.stdout + done.stderr
    assert json.dumps(done.stderr).count("\\n") <= 1
