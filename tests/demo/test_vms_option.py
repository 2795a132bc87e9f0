"""``masterline demo run --vms N``: a bad N is refused in one line with exit code 2, before
anything starts (no database created, no lab, no namespace); a good one is taken. The full
run (VMs from power-on to READY) is shown by hand: README, "The demo with VM laptops"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.vms import MAX_VMS, parse_vm_count
from lab.errors import InvalidLabInput

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("value", ["0", "abc", str(MAX_VMS + 1), "-1", "", "2.5", " "])
def test_a_bad_vm_count_is_refused_in_one_line_before_anything_starts(
    value: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "MASTERLINE_DATA_DIR": str(data)}
    env.pop("MASTERLINE_DATABASE_URL", None)
    done = subprocess.run(
        [str(BIN / "masterline"), "demo", "run", "--vms", value, "--port", "1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr == (
        f"error: --vms must be a whole number from 1 to {MAX_VMS}, not {value!r}\n"
    )
    assert not data.exists()  # nothing seeded, no lab, no VM bench


@pytest.mark.parametrize("value", ["1", "2", f" {MAX_VMS}"])
def test_a_good_vm_count_is_taken(value: str) -> None:
    assert parse_vm_count(value) == int(value)


def test_the_count_is_checked_before_the_machine_is() -> None:
    with pytest.raises(InvalidLabInput, match="from 1 to"):
        parse_vm_count("9")
