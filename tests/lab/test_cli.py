"""``masterline lab`` end to end: up, status, fault, reboot, down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import MasterlineError
from lab import sshd
from lab.cli import app, parse_size
from lab.lab import Lab
from tests.support.lab import ssh_run

runner = CliRunner()


@pytest.mark.lab  # starts a lab through the command line, not the fixture
def test_cli_up_status_fault_down(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    lab = Lab(root, keep_running=True)
    try:
        result = runner.invoke(
            app,
            [
                "up",
                "--devices",
                "2",
                "--windows",
                "1",
                "--disk-size",
                "4M",
                "--root",
                str(root),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        laptops = json.loads(result.stdout)
        assert [lp["os_family"] for lp in laptops] == ["linux", "linux", "windows"]
        # Idempotent: asking again for the same counts adds nothing.
        again = runner.invoke(app, ["up", "--devices", "2", "--root", str(root), "--json"])
        assert len(json.loads(again.stdout)) == 3

        result = runner.invoke(
            app, ["fault", "lab0001", "wrong-serial", "--param", "serial=XYZ", "--root", str(root)]
        )
        assert result.exit_code == 0, result.output
        assert (
            ssh_run(
                lab.get("lab0001"), 'cat "$MASTERLINE_PE_ROOT/sys/class/dmi/id/product_serial"'
            )[1]
            == b"XYZ\n"
        )

        result = runner.invoke(app, ["reboot", "lab0003", "--root", str(root)])
        assert result.exit_code == 0, result.output
        rows = json.loads(runner.invoke(app, ["status", "--root", str(root), "--json"]).stdout)
        assert rows[0]["faults"] == {"wrong_serial": {"serial": "XYZ"}}
        assert rows[2]["boot"] == "os" and rows[2]["winrm_port"]
        assert [r["sshd_running"] for r in rows] == [True, True, False]

        table = runner.invoke(app, ["status", "--root", str(root)])
        assert table.exit_code == 0 and "stopped" in table.stdout

        # Bad input: a MasterlineError (cli.main prints its one line and exits with its code).
        bad = runner.invoke(app, ["fault", "lab0001", "melted", "--root", str(root)])
        assert isinstance(bad.exception, MasterlineError)
        assert bad.exception.exit_code == 2
        assert "unknown fault 'melted'" in bad.exception.message
        assert "\n" not in bad.exception.message
        bad = runner.invoke(app, ["fault", "lab0001", "slow_link", "--root", str(root)])
        assert bad.exit_code != 0

        pids = [sshd.read_pid(lp.dir / "sshd" / "sshd.pid") for lp in lab.laptops()[:2]]
        result = runner.invoke(app, ["down", "--root", str(root)])
        assert result.exit_code == 0
        assert not any(pid and sshd.alive(pid) for pid in pids)
        assert lab.status()[0]["daemon_running"] is False

        # `up` again restarts what `down` stopped, with the same ports and keys.
        result = runner.invoke(app, ["up", "--devices", "0", "--root", str(root), "--json"])
        assert result.exit_code == 0, result.output
        assert ssh_run(lab.get("lab0002"), "true")[0] == 0
        result = runner.invoke(app, ["reset", "--root", str(root)])
        assert result.exit_code == 0
        assert not root.exists()
    finally:
        lab.down()


def test_parse_size() -> None:
    assert parse_size("2G") == 2 * 1024**3
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("4096") == 4096
