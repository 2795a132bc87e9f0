"""The agent's life: read the laptop, register (waiting and retrying as told), write
the worker keys for root's SSH login, heartbeat, obey the answers.

Console lines that tests and technicians read (one per event, machine-readable first
word): ``MASTERLINE-AGENT registered device=<id> boot=<id>``, ``MASTERLINE-AGENT waiting
reason=<…>``, ``MASTERLINE-AGENT refused reason=<code> <detail>``. Tokens and the
enrollment credential are never printed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import VERSION, cmdline, inventory, sysinfo
from .client import Answer, Api, Unreachable
from .sysinfo import Root

PREFIX = "MASTERLINE-AGENT"
REFUSED_RETRY = 60.0
MAX_WAIT = 300.0
EXIT_CONFIG, EXIT_NO_IDENTITY, EXIT_WAIT, EXIT_REFUSED = 2, 3, 10, 20


def say(text: str) -> None:
    print(f"{PREFIX} {text}", flush=True)


class Backoff:
    """Exponential with jitter, for an API that does not answer (2 s … 60 s)."""

    def __init__(self, first: float = 2.0, cap: float = 60.0) -> None:
        self.first, self.cap, self.n = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.n)
        self.n += 1
        return delay * random.uniform(0.75, 1.25)  # noqa: S311  (jitter, not crypto)

    def reset(self) -> None:
        self.n = 0


class Agent:
    def __init__(self, root: Root, params: cmdline.Params, api: Api, *, once: bool) -> None:
        self.root, self.params, self.api, self.once = root, params, api, once
        self.stop = threading.Event()
        self.backoff = Backoff()
        self.inventory: dict[str, Any] | None = None

    def sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        return not self.stop.wait(max(0.0, seconds))

    def registration(self, ident: dict[str, Any], host_key: str) -> dict[str, Any]:
        return {
            "serial": ident["serial"],
            "smbios_uuid": ident["smbios_uuid"],
            "vendor": ident["vendor"],
            "model": ident["model"],
            "interfaces": sysinfo.interfaces(self.root),
            "address": self.api.local_address() or "",
            "ssh_port": self.params.ssh_port,
            "host_key": host_key,
            "inventory": self.inventory,
            "pe_version": self.root.read("etc/masterline-pe-version", limit=64),
            "agent_version": VERSION,
        }

    def run(self, ident: dict[str, Any], host_key: str) -> int:
        while not self.stop.is_set():
            try:
                answer = self.api.post(
                    "/boot/register", self.registration(ident, host_key), bearer=self.params.enroll
                )
            except Unreachable as e:
                say(f"waiting reason=api-unreachable {e}")
                if self.once or not self.sleep(self.backoff.next()):
                    return EXIT_WAIT
                continue
            outcome = self.handle(answer)
            if outcome is not None:
                return outcome
        return 0

    def handle(self, answer: Answer) -> int | None:
        """None: register again (after the pause this decided); else the exit code."""
        body = answer.body
        if answer.status == 200 and body.get("status") == "go":
            self.backoff.reset()
            return self.registered(body)
        if answer.status == 202:
            self.backoff.reset()
            say(
                f"waiting reason={str(body.get('reason', '?')).replace(' ', '-')} "
                f"{body.get('message', '')}"
            )
            retry = float(body.get("retry_seconds") or 15)
            if self.once or not self.sleep(min(MAX_WAIT, retry)):
                return EXIT_WAIT
            return None
        if answer.status == 429:
            say(f"waiting reason=rate-limited {answer.detail}")
            pause = float(answer.retry_after or self.backoff.next())
            if self.once or not self.sleep(min(MAX_WAIT, pause)):
                return EXIT_WAIT
            return None
        if 400 <= answer.status < 500:
            # Refused (unknown serial, another site, quarantined…): a technician may fix
            # it (scan, attach, release), so try again now and then.
            say(f"refused reason={body.get('reason', answer.status)} {answer.detail}")
            if self.once or not self.sleep(REFUSED_RETRY * random.uniform(0.8, 1.2)):  # noqa: S311
                return EXIT_REFUSED
            return None
        say(f"waiting reason=server-error {answer.detail}")
        if self.once or not self.sleep(self.backoff.next()):
            return EXIT_WAIT
        return None

    def registered(self, body: dict[str, Any]) -> int | None:
        token = str(body.get("agent_token") or "")
        write_authorized_keys(self.root, [str(k) for k in body.get("authorized_keys") or []])
        say(f"registered device={body.get('device_id')} boot={body.get('boot_id')}")
        if self.once:
            return 0
        action = self.heartbeats(token, float(body.get("heartbeat_seconds") or 15))
        if action in ("poweroff", "reboot"):
            self.act(action)
            return 0
        return None  # the token was refused: register again

    def heartbeats(self, token: str, period: float) -> str | None:
        """Heartbeat until stopped, told to act (the action), or refused (None)."""
        while self.sleep(period):
            try:
                answer = self.api.post(
                    "/boot/heartbeat", {"status": "idle", "agent_version": VERSION}, bearer=token
                )
            except Unreachable:
                continue  # the token stays valid; the server decides when silence is too long
            if answer.status == 200:
                period = float(answer.body.get("heartbeat_seconds") or period)
                action = answer.body.get("action")
                if action in ("poweroff", "reboot"):
                    return str(action)
            elif answer.status == 401:
                say("token refused (a newer boot, or expired); registering again")
                return None
            elif answer.status == 429 and answer.retry_after:
                self.sleep(answer.retry_after)
        return "stopped"

    def act(self, action: str) -> None:
        if self.root.path != Path("/"):
            say(f"action={action} (not run: reading a test root)")
            return
        say(f"action={action}")
        subprocess.run([action, "-f"], check=False)


def write_authorized_keys(root: Root, keys: list[str]) -> None:
    """Root's authorized_keys: the worker keys the registration answered, nothing else."""
    lines = [
        k.strip()
        for k in keys
        if k.strip().startswith(("ssh-", "ecdsa-", "sk-")) and "\n" not in k.strip()
    ]
    ssh_dir = root.file("root/.ssh")
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    target = ssh_dir / "authorized_keys"
    tmp = ssh_dir / ".authorized_keys.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(line + "\n" for line in lines))
    os.replace(tmp, target)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m agent", description=__doc__)
    parser.add_argument("--root", default="/", help="read /sys, /proc, /etc under this root")
    parser.add_argument("--cmdline", help="kernel command line file (default ROOT/proc/cmdline)")
    parser.add_argument("--once", action="store_true", help="register once, then exit")
    parser.add_argument("--budget", type=float, default=inventory.DEFAULT_BUDGET)
    args = parser.parse_args(argv)
    root = Root(Path(args.root))
    path = Path(args.cmdline) if args.cmdline else root.file("proc/cmdline")
    try:
        params = cmdline.parse(path.read_text(errors="replace"))
    except (OSError, cmdline.ConfigError) as e:
        say(f"error reason=config {e}")
        return EXIT_CONFIG
    api = Api(params.api, ca_sha256=params.ca_sha256)
    agent = Agent(root, params, api, once=args.once)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    ident = sysinfo.identity(root)
    if not ident["serial"]:
        say("error reason=no-serial the firmware reports no system serial number")
        return EXIT_NO_IDENTITY
    host_key = None
    for _ in range(30):  # sshd writes its fresh key just before the agent starts
        host_key = sysinfo.host_key(root)
        if host_key or not agent.sleep(1):
            break
    if not host_key:
        say("error reason=no-host-key /etc/ssh/ssh_host_ed25519_key.pub is missing")
        return EXIT_NO_IDENTITY
    agent.inventory = inventory.collect(root, budget=args.budget)
    say(
        f"inventory collected in {agent.inventory['collect_seconds']:.2f}s serial={ident['serial']}"
    )
    return agent.run(ident, host_key)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
