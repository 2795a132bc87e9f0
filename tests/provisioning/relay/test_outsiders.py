"""Only members of the wave take part: a laptop holding another wave's credentials
(another client's wave) or none at all gets no chunk, from a member or from the
source, and a member never takes chunks from it."""

from __future__ import annotations

import json
import queue
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from images.manifest import Manifest
from provisioning.relay.credentials import WaveAuthority
from provisioning.relay.plan import SOURCE
from provisioning.relay.wave import MemberProcess, Wave
from tests.provisioning.relay.conftest import Gate, Running, relay_argv, sha
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def _outsider_config(wave: Wave, target: Path, upstreams: list[dict[str, Any]]) -> str:
    """A relay that claims to be member m9 of ``wave`` with credentials of its own."""
    config = json.loads(wave.config("m9", target, listen="127.0.0.1", uplink_bps=0))
    config["tls"] = WaveAuthority("another-wave").issue("m9").as_config()
    config["upstreams"] = upstreams
    return json.dumps(config)


def _events(inbox: queue.Queue[Any]) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(inbox.get_nowait()[1])
        except queue.Empty:
            return out


def test_outsider_gets_nothing(image: tuple[Path, Manifest], disks: Path) -> None:
    path, manifest = image
    gate = Gate(4)
    with Wave(image=path, manifest=manifest, pace=gate) as wave:
        for name in ("m0", "m1"):
            wave.add(name, relay_argv(), disks / name)
        running = Running(wave).start()
        eventually(lambda: all(m.port for m in wave.members.values()))
        m0 = wave.members["m0"]
        src_host, src_port = wave.source.address
        targets = [
            {"member": "m0", "host": m0.host, "port": m0.port},
            {"member": SOURCE, "host": src_host, "port": src_port},
        ]
        inbox: queue.Queue[Any] = queue.Queue()
        outsider = MemberProcess("m9", relay_argv(), inbox)
        outsider.send_line(_outsider_config(wave, disks / "m9", targets))
        seen: list[dict[str, Any]] = []

        def tried_both() -> bool:
            seen.extend(_events(inbox))
            lost = {e.get("upstream") for e in seen if e.get("event") == "upstream_lost"}
            return {"m0", SOURCE} <= lost

        try:
            eventually(tried_both, timeout=120)
        finally:
            outsider.stop()
        assert not any(e.get("event") == "connected" for e in seen)
        assert (disks / "m9").stat().st_size == 0
        # The member and the source saw a refused handshake.
        eventually(lambda: any(e.get("event") == "refused" for e in wave.outcomes["m0"].events))
        assert wave.refused

        # No certificate at all: the TLS handshake fails before any frame.
        with socket.create_connection((m0.host, m0.port), timeout=30) as raw:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with pytest.raises((ssl.SSLError, OSError)), ctx.wrap_socket(raw) as tls:
                tls.sendall(b'{"v":1,"wave":"x","member":"m9","chunk":0}\n')
                assert tls.recv(1) == b""  # closed without a byte (if it got this far)
                raise OSError("closed")
        # Plain TCP with a hello: nothing comes back but the end of the connection.
        with socket.create_connection((m0.host, m0.port), timeout=30) as raw:
            raw.sendall(json.dumps({"wave": wave.id, "member": "m0", "chunk": 0}).encode() + b"\n")
            try:
                data = raw.recv(65536)
            except OSError:
                data = b""
            assert b"\x00" * 16 not in data and len(data) < 1024  # a TLS alert at most

        gate.opened.set()
        outcomes = running.join()
        assert outcomes["m0"].ok and outcomes["m1"].ok
        assert sha(disks / "m1") == manifest.sha256
        assert all(member != "m9" for member, _ in wave.source.served)


def test_member_refuses_an_upstream_outside_the_wave(
    image: tuple[Path, Manifest], disks: Path
) -> None:
    """A route pointing at a machine with another wave's certificate (poisoned, or
    stale): the member completes no handshake with it and takes nothing from it."""
    path, manifest = image
    with Wave(image=path, manifest=manifest) as wave:
        inbox: queue.Queue[Any] = queue.Queue()
        member = MemberProcess("m1", relay_argv(), inbox)
        # A member of another wave (it would serve the same image's chunks).
        stranger = Wave(image=path, manifest=manifest)
        with stranger:
            stranger.add("m0", relay_argv(), disks / "stranger")
            eventually(lambda: stranger.inbox.qsize() > 0)
            _, listening = stranger.inbox.get()
            assert listening["event"] == "listening"
            config = json.loads(wave.config("m1", disks / "m1", listen="127.0.0.1", uplink_bps=0))
            config["upstreams"] = [{"member": "m0", "host": "127.0.0.1", "port": listening["port"]}]
            member.send_line(json.dumps(config))
            seen: list[dict[str, Any]] = []

            def refused() -> bool:
                seen.extend(_events(inbox))
                return any(e.get("event") == "upstream_lost" for e in seen)

            try:
                eventually(refused, timeout=120)
            finally:
                member.stop()
        assert not any(e.get("event") == "connected" for e in seen)
        assert (disks / "m1").stat().st_size == 0
