"""Linux configuration through ansible-runner against real lab laptops (real sshd, real
ansible-playbook over SSH with the pinned host key)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from provisioning.configure.apply import configure_os
from provisioning.configure.linux import configure_linux_batch
from provisioning.configure.plan import ConfigPlan, OsTarget
from provisioning.errors import (
    CommandFailed,
    ConfigureCancelled,
    ConnectFailed,
    HostKeyMismatch,
)
from provisioning.pipeline.waves import LinuxWaves
from tests.support.processes import live_processes
from tests.support.waiting import eventually

WG_KEY = "wgPRIVATEkey-0123456789abcdefghijklmnopqrstu="
OVPN_KEY = "-----BEGIN PRIVATE KEY-----\nMIIovpnSECRETline0123456789\n-----END PRIVATE KEY-----"
EAP_PASSWORD = "eap-Secret-Passw0rd-42"
ENV_SECRET = "process-env-secret-must-not-leak-7f3a"


def linux_target(laptop: LabLaptop) -> OsTarget:
    return OsTarget.linux(
        host=laptop.host,
        ssh_port=laptop.ssh_port,
        user=laptop.ssh_user,
        key_path=laptop.client_key_path,
        known_hosts_path=laptop.known_hosts_path,
        target_root=str(laptop.os_root),
    )


def wireguard_plan(serial: str) -> ConfigPlan:
    return ConfigPlan.from_dict(
        {
            "hostname_pattern": "ACME-{serial}",
            "vpn": {
                "kind": "wireguard",
                "server": "vpn.acme.example",
                "port": 51820,
                "settings": {"address": "10.8.0.2/32", "peer_public_key": "PEERpub="},
            },
            "apps": [
                {"name": "teams", "package": "teams-for-linux"},
                {"name": "zoom", "package": "zoom"},
            ],
        },
        os_family="linux",
        secrets={"private_key": WG_KEY},
        fields={"serial": serial},
    )


def booted(lab: Lab, *serials: str) -> list[LabLaptop]:
    laptops = lab.up([LaptopSpec(serial=s, disk_bytes=16 * 1024 * 1024) for s in serials])
    return [lab.reboot_into_os(lp.name) for lp in laptops]


def playbooks_running_in(directory: Path) -> list[str]:
    """Live (non-zombie) ansible-playbook processes whose command line names directory."""
    found = []
    for pid, argv in live_processes():
        cmdline = b" ".join(argv).decode(errors="replace")
        if "ansible-playbook" in cmdline and str(directory) in cmdline:
            found.append(f"{pid}:{cmdline[:120]}")
    return found


def all_text_under(root: Path) -> str:
    """Every file under ``root`` (Masterline's work dir: small files only)."""
    chunks = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 10 * 1024 * 1024:
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_configure_applies_is_idempotent_and_keeps_secrets(
    lab: Lab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A secret in the worker's own environment must not reach Ansible's artifacts either.
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", ENV_SECRET)
    caplog.set_level(logging.DEBUG)
    (laptop,) = booted(lab, "LNX0001")
    target, plan = linux_target(laptop), wireguard_plan(laptop.serial)
    work = tmp_path / "work"
    first: list[dict[str, Any]] = []
    configure_os(target, plan, on_event=first.append, timeout=300, work_dir=work)

    root = laptop.os_root
    assert (root / "etc/hostname").read_text() == "ACME-LNX0001\n"
    assert "127.0.1.1 ACME-LNX0001" in (root / "etc/hosts").read_text()
    wg = root / "etc/wireguard/wg0.conf"
    assert stat.S_IMODE(wg.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/wireguard").stat().st_mode) == 0o700
    profile = wg.read_text()
    assert f"PrivateKey = {WG_KEY}" in profile
    assert "Endpoint = vpn.acme.example:51820" in profile
    assert sorted(p.name for p in (root / "var/lib/masterline/apps").iterdir()) == [
        "teams",
        "zoom",
    ]
    tasks = {(e["task"], e.get("item")) for e in first}
    assert ("Write hostname", None) in tasks
    assert ("Record apps", "teams") in tasks
    assert any(e["changed"] for e in first)
    assert all(e["host"] == target.label and e["kind"] == "task" for e in first)

    mtime = wg.stat().st_mtime_ns
    second: list[dict[str, Any]] = []
    configure_os(target, plan, on_event=second.append, timeout=300, work_dir=work)
    changed = [e for e in second if e["changed"]]
    assert changed == [], f"second run changed: {changed}"
    assert {e["task"] for e in second} == {e["task"] for e in first}
    assert wg.stat().st_mtime_ns == mtime

    # Secrets: not in events, artifacts (job_events, stdout, command + env), logs, output.
    events_text = json.dumps(first + second)
    artifacts = all_text_under(work)
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "job_events" in "\n".join(str(p) for p in work.rglob("*"))
    assert "no_log" in artifacts or "censored" in artifacts
    for secret in (WG_KEY, ENV_SECRET):
        for where, text in (
            ("events", events_text),
            ("artifacts", artifacts),
            ("stdout", out),
            ("stderr", err),
            ("logs", logged),
        ):
            assert secret not in text, f"secret leaked into {where}"
    assert not list(work.rglob("secrets-*.json")), "secret extra-vars file left behind"


def test_failing_task_raises_with_its_name(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "LNX0002")
    # /etc/hosts is a directory: the task that maps the hostname in it must fail.
    (laptop.os_root / "etc/hosts").mkdir(parents=True)
    events: list[dict[str, Any]] = []
    with pytest.raises(CommandFailed) as info:
        configure_os(
            linux_target(laptop),
            wireguard_plan(laptop.serial),
            on_event=events.append,
            timeout=300,
            work_dir=tmp_path / "work",
        )
    message = str(info.value)
    assert "task 'Map hostname in hosts file' failed" in message
    assert laptop.ssh_port and str(laptop.ssh_port) in message
    assert not info.value.retryable
    assert "\n" not in message
    assert WG_KEY not in message
    failed = [e for e in events if e["status"] == "failed"]
    assert failed and failed[0]["task"] == "Map hostname in hosts file"
    # The run stopped there for this laptop: nothing after the failed task was applied.
    assert not (laptop.os_root / "etc/wireguard").exists()


def test_pinned_host_key_mismatch_is_fatal(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "LNX0003")
    other_key = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    wrong = tmp_path / "known_hosts"
    pub = (tmp_path / "other_key.pub").read_text().split()
    wrong.write_text(f"[127.0.0.1]:{laptop.ssh_port} {pub[0]} {pub[1]}\n")
    target = OsTarget.linux(
        host=laptop.host,
        ssh_port=laptop.ssh_port,
        user=laptop.ssh_user,
        key_path=laptop.client_key_path,
        known_hosts_path=wrong,
        target_root=str(laptop.os_root),
    )
    with pytest.raises(HostKeyMismatch) as info:
        configure_os(
            target,
            wireguard_plan(laptop.serial),
            on_event=lambda e: None,
            timeout=120,
            work_dir=tmp_path / "work",
        )
    assert not info.value.retryable
    # Nothing was written through a connection to an untrusted host.
    assert (laptop.os_root / "etc/hostname").read_text() != "ACME-LNX0003\n"


def test_refused_connection_is_retryable(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "LNX0004")
    lab.set_fault(laptop.name, Fault.SSH_REFUSED)
    with pytest.raises(ConnectFailed) as info:
        configure_os(
            linux_target(laptop),
            wireguard_plan(laptop.serial),
            on_event=lambda e: None,
            timeout=120,
            work_dir=tmp_path / "work",
        )
    assert info.value.retryable


def test_cancel_stops_the_run_and_leaves_no_process(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "LNX0005")
    with pytest.raises(ConfigureCancelled):
        configure_os(
            linux_target(laptop),
            wireguard_plan(laptop.serial),
            on_event=lambda e: None,
            timeout=120,
            cancel=lambda: True,
            work_dir=tmp_path / "work",
        )
    # SIGKILL went to the whole process group; give the kernel a moment to reap it.
    eventually(lambda: playbooks_running_in(tmp_path) == [], message="playbooks left running")
    assert not list(tmp_path.rglob("secrets-*.json"))


def test_batch_configures_each_laptop_and_reports_each(lab: Lab, tmp_path: Path) -> None:
    """One ansible-playbook for several laptops (what the benchmark measures): OpenVPN
    on one, IKEv2 on the other, a failure on a third reported for that laptop alone."""
    ovpn, ike, broken = booted(lab, "LNX0011", "LNX0012", "LNX0013")
    (broken.os_root / "etc/hosts").mkdir(parents=True)  # lineinfile cannot write a dir
    ovpn_plan = ConfigPlan.from_dict(
        {
            "hostname": "ACME-OVPN",
            "vpn": {
                "kind": "openvpn",
                "name": "acme",
                "server": "ovpn.acme.example",
                "settings": {"ca": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----"},
            },
        },
        os_family="linux",
        secrets={
            "cert": "-----BEGIN CERTIFICATE-----\nME\n-----END CERTIFICATE-----",
            "key": OVPN_KEY,
        },
    )
    ike_plan = ConfigPlan.from_dict(
        {
            "hostname": "ACME-IKE",
            "vpn": {
                "kind": "ikev2",
                "name": "acme",
                "server": "ike.acme.example",
                "settings": {"eap_identity": "lnx0012@acme.example"},
            },
            "apps": [{"name": "slack", "package": "slack-desktop"}],
        },
        os_family="linux",
        secrets={"eap_password": EAP_PASSWORD},
    )
    events: list[dict[str, Any]] = []
    results = configure_linux_batch(
        [
            (linux_target(ovpn), ovpn_plan),
            (linux_target(ike), ike_plan),
            (linux_target(broken), ike_plan),
        ],
        on_event=events.append,
        timeout=300,
        work_dir=tmp_path / "work",
    )
    assert results[linux_target(ovpn).label] is None
    assert results[linux_target(ike).label] is None
    error = results[linux_target(broken).label]
    assert isinstance(error, CommandFailed) and "Map hostname in hosts file" in str(error)

    ovpn_conf = ovpn.os_root / "etc/openvpn/client/acme.conf"
    assert "remote ovpn.acme.example 1194" in ovpn_conf.read_text()
    assert "MIIovpnSECRETline" in ovpn_conf.read_text()
    assert stat.S_IMODE(ovpn_conf.stat().st_mode) == 0o600
    swan = (ike.os_root / "etc/swanctl/conf.d/acme.conf").read_text()
    assert "remote_addrs = ike.acme.example" in swan and EAP_PASSWORD in swan
    assert (ike.os_root / "var/lib/masterline/apps/slack").exists()
    assert {e["host"] for e in events} == {linux_target(x).label for x in (ovpn, ike, broken)}
    text = json.dumps(events) + all_text_under(tmp_path / "work")
    for secret in ("MIIovpnSECRETline", EAP_PASSWORD):
        assert secret not in text


def test_laptops_reaching_configure_together_share_one_run_and_one_abort_spares_the_rest(
    lab: Lab, tmp_path: Path
) -> None:
    """Three laptops reach configure within the window: one ansible-playbook run for the
    three. The third is aborted once its first task has run: that run stops, and the
    other two are configured again, without it, in a wave of two."""
    import threading

    laptops = booted(lab, "LNX0021", "LNX0022", "LNX0023")
    waves = LinuxWaves(window=30, max_size=3, work_dir=tmp_path / "work")
    events: dict[str, list[dict[str, Any]]] = {lp.serial: [] for lp in laptops}
    outcome: dict[str, BaseException | None] = {}
    aborted = threading.Event()

    def record(serial: str) -> Any:
        def on_event(event: dict[str, Any]) -> None:
            events[serial].append(event)
            if serial == "LNX0023" and event.get("kind") == "task":
                aborted.set()  # the technician's abort lands mid-run

        return on_event

    def configure(lp: LabLaptop) -> None:
        try:
            waves.configure(
                linux_target(lp),
                wireguard_plan(lp.serial),
                on_event=record(lp.serial),
                timeout=300,
                cancel=aborted.is_set if lp.serial == "LNX0023" else None,
            )
            outcome[lp.serial] = None
        except BaseException as e:  # the test inspects it
            outcome[lp.serial] = e

    threads = [threading.Thread(target=configure, args=(lp,)) for lp in laptops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)

    assert outcome["LNX0021"] is None and outcome["LNX0022"] is None
    assert isinstance(outcome["LNX0023"], ConfigureCancelled)
    for serial in ("LNX0021", "LNX0022"):
        waves_seen = [e["laptops"] for e in events[serial] if e["kind"] == "wave"]
        assert waves_seen == [3, 2]
    assert [e["laptops"] for e in events["LNX0023"] if e["kind"] == "wave"] == [3]
    # Each laptop's events are its own.
    for lp in laptops:
        hosts = {e["host"] for e in events[lp.serial] if e["kind"] == "task"}
        assert hosts == {linux_target(lp).label}
    for lp in laptops[:2]:
        assert (lp.os_root / "etc/wireguard/wg0.conf").exists()
    assert playbooks_running_in(tmp_path) == []


def test_no_stray_playbook_survives_in_the_private_dir(tmp_path: Path) -> None:
    """A killed worker's ansible-playbook is killed by the next run in its directory;
    a recycled PID (a process not naming the directory) is left alone."""
    from provisioning.configure.ansible_procs import kill_stray

    pdd = tmp_path / "pdd"
    pdd.mkdir()
    fake = tmp_path / "ansible-playbook"
    fake.write_text("#!/bin/sh\nsleep 60\n")
    fake.chmod(0o755)
    for args, killed in (([], False), ([f"-i{pdd}/inventory"], True)):
        proc = subprocess.Popen([str(fake), *args], start_new_session=True)
        try:
            # Until it has exec'd, the child still shows pytest's command line.
            cmdline = Path(f"/proc/{proc.pid}/cmdline")

            def started(cmdline: Path = cmdline) -> bool:
                return b"ansible-playbook" in cmdline.read_bytes()

            eventually(
                started,
                every=0.01,
                message="the stand-in did not start",
            )
            (pdd / "playbook.pid").write_text(f"{proc.pid}\n")
            kill_stray(pdd)
            if killed:
                assert proc.wait(timeout=10) != 0
            else:
                assert proc.poll() is None
            assert not (pdd / "playbook.pid").exists()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_stray_wave_holding_this_laptop_is_found(tmp_path: Path) -> None:
    """A laptop configured in a wave before its worker was killed may be configured
    alone (or in another wave) after: the stray run is found by the laptops its
    private dir lists, not only by the directory's name."""
    from provisioning.configure.ansible_procs import dirs_sharing_hosts

    root = tmp_path / "ansible"
    wave, alone, done = root / "batch-0123456789ab", root / "127.0.0.1_2201", root / "batch-x"
    for d in (wave, alone, done):
        d.mkdir(parents=True)
    (wave / "hosts").write_text("127.0.0.1_2201\n127.0.0.1_2202\n")
    (wave / "playbook.pid").write_text("1\n")
    (done / "hosts").write_text("127.0.0.1_2201\n")  # finished: no pid file
    assert dirs_sharing_hosts(alone, {"127.0.0.1_2201"}) == [wave]
    assert dirs_sharing_hosts(alone, {"127.0.0.1_2203"}) == []
    (alone / "playbook.pid").write_text("1\n")  # a laptop's own dir, by its name
    assert dirs_sharing_hosts(root / "batch-y", {"127.0.0.1_2201"}) == [alone, wave]


def test_process_env_is_restricted_for_ansible(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioning.configure.ansible_procs import restrict_env

    monkeypatch.setenv("MASTERLINE_DATABASE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("ANSIBLE_FORCE_COLOR", "0")

    class Config:
        env = {**os.environ, "PATH": "/venv/bin:/usr/bin", "AWX_ISOLATED_DATA_DIR": "/x"}

    config = Config()
    restrict_env(config)
    assert "MASTERLINE_DATABASE_URL" not in config.env
    assert config.env["PATH"] == "/venv/bin:/usr/bin"  # set for the run: kept
    assert "AWX_ISOLATED_DATA_DIR" in config.env and "ANSIBLE_FORCE_COLOR" in config.env
