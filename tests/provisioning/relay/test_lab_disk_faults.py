"""The lab's disk faults hold for the relay's own writes (``pwrite`` through
``relay_wire.open_target`` and the lab's hook, ``lab/pe_disk_hook.py``), as they do for
``dd``, ``zstd`` and ``sync``: relays started over SSH on lab laptops (real sshd, the
laptop's ForceCommand applying its faults), each disk checked here byte by byte."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from images.manifest import Manifest
from lab.faults import Fault
from lab.lab import Lab, LabLaptop
from lab.laptop import LaptopSpec
from provisioning.pipeline.relays import RELAY_COMMAND
from provisioning.relay.plan import SOURCE
from provisioning.relay.wave import Wave
from tests.provisioning.relay.conftest import CHUNK
from tests.support.lab import lab, ssh_cli_argv  # noqa: F401

pytestmark = pytest.mark.slow

FLIP_AT = 2 * CHUNK + 10
"""In the image's first chunk of data (chunks 0 and 1 are zeros)."""


def _laptops(the_lab: Lab, n: int) -> list[LabLaptop]:
    specs = [LaptopSpec(serial=f"RELAYF{i}", disk_bytes=16 * 1024 * 1024) for i in range(n)]
    return the_lab.up(specs)


@pytest.mark.parametrize(
    ("fault", "params", "reason"),
    [
        (Fault.FLIPPED_BYTE, {"offset": FLIP_AT}, "read back does not match"),
        (Fault.DISK_FULL, {"after_bytes": 3 * CHUNK}, "No space left on device"),
        (Fault.DISK_WRITE_ERROR, {"after_bytes": 0}, "Input/output error"),
        (Fault.FLUSH_ERROR, {}, "flushing or reading back the target failed"),
    ],
)
def test_a_lab_disk_fault_holds_for_the_relays_writes(
    lab: Lab,  # noqa: F811
    image: tuple[Path, Manifest],
    fault: Fault,
    params: dict[str, int],
    reason: str,
) -> None:
    path, manifest = image
    head, tail = _laptops(lab, 2)
    lab.set_fault(head.name, fault, **params)
    with Wave(image=path, manifest=manifest) as wave:
        for name, lp in (("m0", head), ("m1", tail)):
            argv = [*ssh_cli_argv(lp), RELAY_COMMAND]
            wave.add(name, argv, f"/dev/{lp.disk_device}", host=lp.host)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
    assert outcomes["m0"].ok is False
    assert reason in outcomes["m0"].reason
    # The laptop behind it got the image anyway (around it, from the server).
    assert outcomes["m1"].ok is True
    image_bytes = path.read_bytes()
    assert tail.disk_path.read_bytes()[: manifest.size] == image_bytes
    written = head.disk_path.read_bytes()[: manifest.size]
    if fault == Fault.FLIPPED_BYTE:
        # Everything was written; exactly the fault's byte does not read back.
        diff = [i for i in range(manifest.size) if written[i] != image_bytes[i]]
        assert diff == [FLIP_AT]
        # The laptop behind it, if it was served that chunk from the faulty disk,
        # refused it; if the head failed first (its own read back) it was rerouted to
        # the server before that chunk (which of the two comes first is the machine's
        # load: either way no wrong byte reached its disk, checked above).
        events = outcomes["m1"].events
        corrupt = [e for e in events if e.get("event") == "corrupt"]
        if corrupt:
            assert corrupt[0]["chunk"] == FLIP_AT // CHUNK
        else:
            rerouted = [
                e
                for e in events
                if e.get("event") == "connected" and e.get("upstream") == SOURCE
                and int(e["offset"]) <= FLIP_AT
            ]  # fmt: skip
            assert rerouted, events
    elif fault == Fault.DISK_FULL:
        # Exactly what fit was written, nothing after it.
        assert written[: 3 * CHUNK] == image_bytes[: 3 * CHUNK]
        assert written[3 * CHUNK :] == bytes(manifest.size - 3 * CHUNK)
    elif fault == Fault.DISK_WRITE_ERROR:
        assert written == bytes(manifest.size)


def test_without_a_fault_the_relay_writes_the_lab_disk_plainly(
    lab: Lab,  # noqa: F811
    image: tuple[Path, Manifest],
) -> None:
    path, manifest = image
    (lp,) = _laptops(lab, 1)
    lab.set_fault(lp.name, Fault.FLIPPED_BYTE, offset=FLIP_AT)
    lab.clear_faults(lp.name)
    with Wave(image=path, manifest=manifest) as wave:
        wave.add("m0", [*ssh_cli_argv(lp), RELAY_COMMAND], f"/dev/{lp.disk_device}")
        outcomes = wave.wait(deadline=time.monotonic() + 240)
    assert outcomes["m0"].ok is True
    assert lp.disk_path.read_bytes()[: manifest.size] == path.read_bytes()
