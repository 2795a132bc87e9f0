"""Lab laptops rebooted into their installed Linux OS, configured by real Ansible over SSH."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

from lab.faults import Fault
from lab.lab import Lab, LabLaptop
from tests.support.lab import ssh_run

PLAYBOOK = """
- hosts: laptops
  gather_facts: false
  tasks:
    - name: set the hostname in the installed system (under the lab's target root)
      ansible.builtin.shell: >-
        printf '%s\\n' '{{ wanted_hostname }}' > "${MASTERLINE_TARGET_ROOT:-}/etc/hostname"
"""


def _host(laptop: LabLaptop, hostname: str) -> dict[str, Any]:
    return {
        "ansible_host": laptop.host,
        "ansible_port": laptop.ssh_port,
        "ansible_user": laptop.ssh_user,
        "ansible_ssh_private_key_file": str(laptop.client_key_path),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={laptop.known_hosts_path} "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        "wanted_hostname": hostname,
    }


def _run(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> ansible_runner.Runner:
    project = tmp_path / "runner" / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "site.yml").write_text(PLAYBOOK)
    return ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"),
        playbook="site.yml",
        inventory={"laptops": {"hosts": hosts}},
        quiet=True,
        envvars={
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            # No ControlPersist master: it would outlive the test and hide a refused port.
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        },
        suppress_env_files=True,
        timeout=120,
    )


def test_ansible_configures_a_rebooted_laptop_and_finds_a_refused_one_unreachable(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ansible-runner looks ansible-playbook up on PATH; the venv may not be activated.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    good, refused = lab.up_n(2, disk_bytes=1024 * 1024)
    booted = lab.reboot_into_os(good.name)
    assert booted.boot == "os"
    assert (booted.os_root / "etc" / "hostname").read_text() == "localhost\n"
    # Same port and host key: the pinned known_hosts still verifies.
    assert booted.ssh_port == good.ssh_port
    assert booted.known_hosts_path == good.known_hosts_path
    down = lab.reboot_into_os(refused.name)
    lab.set_fault(down.name, Fault.SSH_REFUSED)

    result = _run(
        tmp_path,
        {booted.name: _host(booted, "LAPTOP-ACME-0042"), down.name: _host(down, "NEVER")},
    )
    assert result.status == "failed"
    assert result.stats is not None
    assert result.stats["ok"].get(booted.name) and not result.stats["failures"]
    assert result.stats["dark"].get(down.name)
    assert (booted.os_root / "etc" / "hostname").read_text() == "LAPTOP-ACME-0042\n"
    assert (down.os_root / "etc" / "hostname").read_text() == "localhost\n"
    _, out, _ = ssh_run(booted, 'cat "$MASTERLINE_TARGET_ROOT/etc/hostname"')
    assert out == b"LAPTOP-ACME-0042\n"


def test_reimaging_brings_a_fresh_install(lab: Lab) -> None:
    (laptop,) = lab.up_n(1, disk_bytes=1024 * 1024)
    booted = lab.reboot_into_os(laptop.name)
    assert ssh_run(booted, 'echo LT-1 > "$MASTERLINE_TARGET_ROOT/etc/hostname"')[0] == 0
    # Rebooting without writing the disk keeps the installed system…
    again = lab.reboot_into_os(laptop.name)
    assert (again.os_root / "etc" / "hostname").read_text() == "LT-1\n"
    # …re-imaging it (a write in the PE) brings a fresh one.
    pe = lab.boot_pe(laptop.name)
    write = 'dd of="$MASTERLINE_PE_ROOT/dev/nvme0n1" conv=notrunc status=none'
    assert ssh_run(pe, write, b"new image")[0] == 0
    fresh = lab.reboot_into_os(laptop.name)
    assert (fresh.os_root / "etc" / "hostname").read_text() == "localhost\n"
