"""The worker's source and the PE's relay speak one wire, written twice on purpose (the
PE's module is standard library only and ships alone): these checks fail as soon as
one side changes without the other."""

from __future__ import annotations

import json
import socket

import pytest

from boot.agent import relay_wire as pe
from provisioning.relay import source


def test_the_frames_and_limits_are_the_same() -> None:
    assert source.FRAME.format == pe.FRAME.format
    assert (source.DATA, source.ZERO) == (pe.DATA, pe.ZERO)
    assert source.HELLO_MAX == pe.HELLO_MAX
    assert source.VERSION == pe.VERSION


@pytest.mark.parametrize(
    "sent",
    [
        json.dumps({"wave": "w1", "member": "m2", "version": 1}).encode() + b"\n",
        b"[1, 2]\n",  # well-formed JSON, not a hello
        b"x" * 5000,  # no end of line within the limit
        b"",  # the peer hung up
    ],
)
def test_both_sides_read_a_hello_alike(sent: bytes) -> None:
    outcomes = []
    for side in (source, pe):
        a, b = socket.socketpair()
        with a, b:
            b.sendall(sent)
            b.shutdown(socket.SHUT_WR)
            try:
                outcomes.append(("ok", side.read_hello(a)))
            except ValueError as e:
                outcomes.append(("error", str(e)))
    assert outcomes[0] == outcomes[1]
