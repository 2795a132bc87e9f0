"""ansible-runner plumbing for the Linux configure step and the gate.

One call runs one playbook against one or more laptops and returns, per laptop, the
first failure and the results of the tasks, computed from our own event handler
(returning ``False`` from it would empty ``r.events``/``r.stats``; we keep events on disk
for debugging, and a test proves none of them holds a secret).

What keeps this safe and bounded (research §4):

- **Secrets** go to ansible-playbook only as an extra-vars file (``-e @file``) created
  with mode 0600 in the run's private directory and deleted when the run ends; runner's
  ``env/`` files are suppressed (``suppress_env_files``) and ``extravars`` is never
  used for them (runner would put them on the command line, which it also writes to
  ``artifacts/<ident>/command``). That ``command`` artifact also records the
  environment, so ansible-playbook gets an allow-listed environment, not ours (which
  may hold ``MASTERLINE_SECRET_KEY`` or a database URL).
- **Host keys** are pinned: ``UserKnownHostsFile=<the site's file>``,
  ``StrictHostKeyChecking=yes``; never auto-accepted.
- **Signals**: ``run()`` installs its own SIGINT/SIGTERM handlers unless given a
  ``cancel_callback`` (ansible-runner#1075); we always pass one.
- **Stray processes**: ansible-playbook outlives a SIGKILLed worker (#973); its PID is
  recorded in the private directory and a later run there kills it first. ControlPersist
  masters live in a short directory per private dir and are told to exit when the run
  ends (or, after a kill, when the next run there starts).
- **Disk**: ``rotate_artifacts`` keeps the last few runs per laptop (#97).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_runner.interface import init_runner

from core.settings import get_settings
from provisioning.configure.ansible_procs import (
    control_dir,
    dirs_sharing_hosts,
    envvars,
    kill_stray,
    restrict_env,
    stop_control_masters,
)
from provisioning.configure.plan import OsFamily, OsTarget

EventCallback = Callable[[dict[str, Any]], None]
CancelCallback = Callable[[], bool]

ARTIFACTS_KEPT = 6
# The environment ansible-playbook may inherit from us; everything else is dropped.
_TASK_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
    "runner_item_on_ok": "ok",
    "runner_item_on_failed": "failed",
    "runner_item_on_skipped": "skipped",
}
_ITEM_EVENTS = {"runner_item_on_ok", "runner_item_on_failed", "runner_item_on_skipped"}
_SAFE_ALIAS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class HostRun:
    """One laptop in a playbook run: its non-secret variables and its secrets."""

    target: OsTarget
    hostvars: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def alias(self) -> str:
        return host_alias(self.target)


@dataclass
class HostFailure:
    task: str
    kind: str  # "failed" | "unreachable"
    message: str
    item: str | None = None


@dataclass
class HostOutcome:
    failure: HostFailure | None = None
    # Results of tasks that ran ok, by task name: one dict, or one per loop item.
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    changed: int = 0
    tasks: int = 0
    completed: bool = False
    """The play recap lists this host with no failure and no unreachable."""


@dataclass
class PlaybookOutcome:
    status: str  # successful | failed | timeout | canceled
    rc: int
    hosts: dict[str, HostOutcome]
    tail: str = ""
    """Last lines of ansible-playbook's output (scrubbed), for failures no task explains."""


def host_alias(target: OsTarget) -> str:
    """The inventory name of a laptop: unique per host and port (lab laptops share
    127.0.0.1), and a valid Ansible host pattern (no ':')."""
    return _SAFE_ALIAS.sub("_", f"{target.host}_{target.ssh_port}")


def private_dir_for(hosts: Sequence[HostRun], base: Path | None = None) -> Path:
    """One private data dir per laptop (per laptop set for a batch), so that its
    artifacts rotate and a stray ansible-playbook of an earlier run can be found."""
    root = base or (get_settings().data_dir / "ansible")
    if len(hosts) == 1:
        return root / hosts[0].alias
    # Stable for the same set of laptops, so its artifacts rotate too.
    digest = hashlib.sha256(",".join(sorted(h.alias for h in hosts)).encode()).hexdigest()
    return root / f"batch-{digest[:12]}"


def run_playbook(
    playbook: Path,
    hosts: Sequence[HostRun],
    *,
    on_event: EventCallback,
    timeout: float,
    private_dir: Path | None = None,
    cancel: CancelCallback | None = None,
    scrub: Sequence[str] = (),
    forks: int | None = None,
) -> PlaybookOutcome:
    """Run ``playbook`` on ``hosts`` and report per host.

    ``on_event`` receives one dict per task result: ``{"kind": "task", "host": <label>,
    "task": <name>, "status": ok|changed|failed|skipped|unreachable, "changed": bool}``
    plus ``"item"`` for loop items (its label) and ``"message"`` for failures (censored
    by Ansible for ``no_log`` tasks, and scrubbed of ``scrub`` values in any case).
    """
    if not hosts:
        raise ValueError("run_playbook needs at least one host")
    pdd = private_dir or private_dir_for(hosts)
    pdd.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(pdd, 0o700)
    kill_stray(pdd)
    # A laptop configured in a wave may have been in another set before a worker was
    # killed: a stray run of any private dir holding one of these laptops goes too.
    for other in dirs_sharing_hosts(pdd, {h.alias for h in hosts}):
        kill_stray(other)
    (pdd / "hosts").write_text("".join(f"{h.alias}\n" for h in hosts))
    for stale in pdd.glob("secrets-*.json"):
        stale.unlink(missing_ok=True)  # left by a killed worker

    by_alias = {h.alias: h for h in hosts}
    if len(by_alias) != len(hosts):
        raise ValueError("two hosts share an inventory name")
    outcomes = {alias: HostOutcome() for alias in by_alias}
    secrets = [s for s in scrub if s]
    ident = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    secrets_path = pdd / f"secrets-{ident}.json"
    cp_dir = control_dir(pdd)
    pid_path = pdd / "playbook.pid"

    def handle(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        if "pid" in event and not pid_path.exists():
            with contextlib.suppress(OSError):
                pid_path.write_text(f"{event['pid']}\n")
        kind = event.get("event", "")
        if kind == "playbook_on_stats":
            bad = set(data.get("failures") or {}) | set(data.get("dark") or {})
            for alias in data.get("processed") or {}:
                if alias in outcomes and alias not in bad:
                    outcomes[alias].completed = True
            return True
        status = _TASK_EVENTS.get(kind)
        alias = data.get("host")
        if status is None or alias not in outcomes:
            return True
        res = data.get("res") or {}
        outcome = outcomes[alias]
        changed = bool(res.get("changed")) and status == "ok"
        task = str(data.get("task") or "")
        record: dict[str, Any] = {
            "kind": "task",
            "host": by_alias[alias].target.label,
            "task": task,
            "status": "changed" if changed else status,
            "changed": changed,
        }
        is_item = kind in _ITEM_EVENTS
        loop_summary = not is_item and "results" in res
        item = _item_label(res) if is_item else None
        if item is not None:
            record["item"] = item
        if not is_item:
            outcome.tasks += 1
            outcome.changed += int(changed)
        if status in ("failed", "unreachable"):
            message = _scrub(_result_message(res), secrets)
            record["message"] = message
            # A loop's summary "failed" event follows its item events: keep the first.
            if outcome.failure is None and not data.get("ignore_errors"):
                outcome.failure = HostFailure(task, status, message, item)
        elif status == "ok" and not loop_summary:
            outcome.results.setdefault(task, []).append(res)
        # One record per item when items are named; else one for the task (a no_log
        # loop's items say nothing, its summary at least says ok or failed).
        if (is_item and item is not None) or (not is_item and not loop_summary):
            on_event(record)
        return True

    try:
        # Our own (empty) ansible.cfg: no stray one in the cwd or ~ changes what runs.
        (pdd / "ansible.cfg").touch(mode=0o600, exist_ok=True)
        cmdline = ""
        if any(h.secrets for h in hosts):
            _write_secret_file(secrets_path, {"masterline_secrets": _secrets_doc(hosts)})
            cmdline = f"-e @{secrets_path}"
        runner = init_runner(
            private_data_dir=str(pdd),
            ident=ident,
            playbook=str(playbook.resolve()),
            inventory=_inventory(hosts),
            limit=",".join(by_alias),
            cmdline=cmdline or None,
            envvars=envvars(pdd, cp_dir),
            forks=forks or default_forks(len(hosts)),
            quiet=True,
            suppress_env_files=True,
            rotate_artifacts=ARTIFACTS_KEPT,
            timeout=max(1, int(timeout)),
            event_handler=handle,
            cancel_callback=cancel or (lambda: False),
            # Poll the cancel callback every second, not every five.
            settings={"pexpect_timeout": 1},
        )
        restrict_env(runner.config)
        status, rc = runner.run()
        tail = _scrub(_stdout_tail(Path(runner.config.artifact_dir)), secrets)
    finally:
        secrets_path.unlink(missing_ok=True)
        stop_control_masters(cp_dir)
        pid_path.unlink(missing_ok=True)
    return PlaybookOutcome(status=str(status), rc=int(rc or 0), hosts=outcomes, tail=tail)


MAX_FORKS = 10


def default_forks(hosts: int) -> int:
    """Every laptop of a batch in the same pass: with the linear strategy, fewer forks
    than hosts runs each task in several waves (5 laptops on 4 forks took 1.3x as long
    as on 5). Capped: on 2 cores more than ~10 forks is CPU-bound (research §5)."""
    return max(1, min(hosts, MAX_FORKS))


def inventory_host(target: OsTarget) -> dict[str, Any]:
    """Connection variables of one laptop; the host key is pinned to the site's file."""
    if target.os_family is not OsFamily.LINUX:
        raise ValueError(f"{target.label} is not a Linux target")
    known_hosts = target.known_hosts_path
    if known_hosts is None or not Path(known_hosts).is_file():
        # Without a pinned key, ssh would have nothing to verify against: refuse.
        raise FileNotFoundError(f"{target.label}: no known_hosts file with its host key")
    common = " ".join(
        [
            f"-o UserKnownHostsFile={_shell_quote(str(known_hosts))}",
            "-o StrictHostKeyChecking=yes",
            "-o IdentitiesOnly=yes",
            "-o BatchMode=yes",
            "-o ConnectTimeout=10",
        ]
    )
    hostvars: dict[str, Any] = {
        "ansible_host": target.host,
        "ansible_port": target.ssh_port,
        "ansible_user": target.user,
        "ansible_ssh_common_args": common,
        "ansible_python_interpreter": target.python_interpreter,
        "target_root": target.target_root,
    }
    if target.key_path is not None:
        hostvars["ansible_ssh_private_key_file"] = str(target.key_path)
    if target.user != "root" and not target.target_root:
        hostvars["ansible_become"] = True
    return hostvars


def _inventory(hosts: Sequence[HostRun]) -> dict[str, Any]:
    return {
        "all": {
            "hosts": {h.alias: {**inventory_host(h.target), **h.hostvars} for h in hosts},
        }
    }


def _secrets_doc(hosts: Sequence[HostRun]) -> dict[str, Any]:
    return {h.alias: h.secrets for h in hosts}


def _write_secret_file(path: Path, doc: Mapping[str, Any]) -> None:
    # O_EXCL + 0600 from the first byte: never a moment where another user can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def _item_label(res: Mapping[str, Any]) -> str | None:
    label = res.get("_ansible_item_label")
    if label is None:
        item = res.get("item")
        label = item.get("name") if isinstance(item, Mapping) else None
    if label is None or res.get("_ansible_no_log") or "censored" in res:
        return None
    return str(label)


def _result_message(res: Mapping[str, Any]) -> str:
    if "censored" in res:
        return "output hidden (no_log)"
    parts = [str(res.get("msg") or "").strip()]
    stderr = str(res.get("stderr") or "").strip()
    if stderr and stderr not in parts[0]:
        parts.append(stderr)
    elif res.get("rc") not in (None, 0) and not parts[0]:
        parts.append(f"exit code {res.get('rc')}")
    text = " ".join(" ".join(p.split()) for p in parts if p)
    return text[:300] if text else "no message"


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        for piece in _secret_pieces(secret):
            text = text.replace(piece, "***")
    return text


def _secret_pieces(secret: str) -> Iterator[str]:
    # A multi-line secret may surface line by line; short lines are not distinctive.
    yield secret
    for line in secret.splitlines():
        if len(line.strip()) >= 8:
            yield line.strip()


def _stdout_tail(artifact_dir: Path, lines: int = 5) -> str:
    try:
        text = (artifact_dir / "stdout").read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])[-500:]


def _shell_quote(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_./@:+-]+", value) else "'" + value + "'"
