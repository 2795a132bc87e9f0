"""Registration services the rest of Masterline calls: ``register`` (``register.py``'s,
then the ``ON_GO`` hooks), heartbeats, and the pipeline's view of a laptop's PE boot
(``current_boot``, ``last_boot``), with ``end_boot`` and ``request_action``.

Services don't commit; the request, CLI command or job step does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from boot.registration import register as registration
from boot.registration import repository
from boot.registration.credentials import Enrollment, hash_secret
from boot.registration.errors import BootNotFound, InvalidRegistration
from boot.registration.models import BootStatus, PeBoot, RegistrationAttempt
from boot.registration.register import GO_STATES, Outcome, close_boot
from boot.registration.schemas import RegisterRequest
from boot.registration.sites import settings_of, site_by_code
from core.timeutil import utcnow

__all__ = [
    "GO_STATES",
    "ON_GO",
    "AgentBoot",
    "Outcome",
    "PeBootView",
    "check_agent_token",
    "current_boot",
    "end_boot",
    "heartbeat",
    "last_boot",
    "list_attempts",
    "list_boots",
    "register",
    "request_action",
    "settings_of",
]

_ACTIONS = ("none", "poweroff", "reboot")

GoHook = Callable[[Session, int, int], None]
ON_GO: list[GoHook] = []
"""Called with ``(session, device_id, boot_id)`` when a PE is answered go, inside the
registration's transaction, by the domains above that react (provisioning resumes the
laptop's run that waits for its PE); registered at start by ``wiring.wire``. A hook
must not commit."""


def register(
    session: Session,
    enrollment: Enrollment,
    body: RegisterRequest,
    *,
    peer: str,
    now: datetime | None = None,
) -> Outcome:
    """``register.register`` (match, answer go, wait or a refusal), then, on a go, every
    ``ON_GO`` hook in the same transaction: the PE's address and host key and what the
    hooks did commit together."""
    outcome = registration.register(session, enrollment, body, peer=peer, now=now)
    if outcome.go is not None:
        for hook in ON_GO:
            hook(session, outcome.go.device_id, outcome.go.boot_id)
    return outcome


# What staff read.
def list_boots(
    session: Session,
    *,
    site_code: str | None,
    statuses: Sequence[BootStatus],
    cursor: int | None,
    limit: int,
) -> Sequence[PeBoot]:
    """PE boots, newest first. :raises SiteNotFound: unknown site."""
    site_id = site_by_code(session, site_code).id if site_code else None
    return repository.list_boots(
        session, site_id=site_id, statuses=statuses, cursor=cursor, limit=limit
    )


def list_attempts(
    session: Session,
    *,
    site_code: str | None,
    since: datetime | None,
    cursor: int | None,
    limit: int,
) -> Sequence[RegistrationAttempt]:
    """Refused and quarantined registrations, newest first.

    :raises SiteNotFound: unknown site.
    """
    site_id = site_by_code(session, site_code).id if site_code else None
    return repository.list_attempts(
        session, site_id=site_id, since=since, cursor=cursor, limit=limit
    )


# Heartbeats and the pipeline's view.
@dataclass(frozen=True)
class AgentBoot:
    """An authenticated agent token: which boot of which laptop."""

    boot_id: int
    device_id: int
    token_hash: str


def check_agent_token(
    session: Session, token: str, *, now: datetime | None = None
) -> AgentBoot | None:
    """The registered, unexpired boot ``token`` belongs to, or None."""
    token_hash = hash_secret(token)
    boot = repository.boot_by_token_hash(session, token_hash)
    now = now or utcnow()
    if (
        boot is None
        or boot.id is None
        or boot.status != BootStatus.REGISTERED
        or boot.token_expires_at is None
        or boot.token_expires_at <= now
    ):
        return None
    return AgentBoot(boot_id=boot.id, device_id=boot.device_id, token_hash=token_hash)


def heartbeat(
    session: Session, agent: AgentBoot, *, now: datetime | None = None
) -> tuple[str, int] | None:
    """Keep the boot alive; returns (action, heartbeat seconds), or None when the token
    stopped being this boot's in the meantime (a new boot superseded it)."""
    boot = repository.get_boot(session, agent.boot_id, for_update=True)
    if boot is None or boot.token_hash != agent.token_hash or boot.status != BootStatus.REGISTERED:
        return None
    boot.last_seen_at = now or utcnow()
    session.add(boot)
    session.flush()
    return boot.action, settings_of(session, boot.site_id).heartbeat_seconds


@dataclass(frozen=True)
class PeBootView:
    """What the worker needs to reach a laptop's PE, from its current registration."""

    boot_id: int
    device_id: int
    serial: str
    address: str
    ssh_port: int
    host_key: str
    host_key_fingerprint: str
    registered_at: datetime
    last_heartbeat: datetime
    token_expires_at: datetime
    alive: bool
    silent_for: timedelta
    worker_key_path: str | None
    current: bool = True
    """Registered with an unexpired token (``current_boot``'s): the PE may be used."""
    ended_reason: str | None = None
    """Why it is not current (ended: superseded by a newer boot, quarantined…; told to
    wait; its token expired), when it is not."""

    def known_hosts_line(self) -> str:
        """A known_hosts entry pinning this boot's host key (``[host]:port`` off 22)."""
        name = self.address if self.ssh_port == 22 else f"[{self.address}]:{self.ssh_port}"
        key_type, key_b64 = self.host_key.split()[:2]
        return f"{name} {key_type} {key_b64}\n"


def current_boot(
    session: Session, device_id: int, *, now: datetime | None = None
) -> PeBootView | None:
    """The laptop's current PE boot (registered, token unexpired), or None.

    ``alive`` is False once no heartbeat came for the site's ``silence_seconds``: the
    pipeline fails its step with that reason; when the laptop boots again, a new boot
    (new host key, new address perhaps) replaces this one and the run resumes with it.
    """
    view = last_boot(session, device_id, now=now)
    return view if view is not None and view.current else None


def last_boot(
    session: Session, device_id: int, *, now: datetime | None = None
) -> PeBootView | None:
    """The laptop's newest boot that was ever answered go, current or not (``current``
    False: ended, superseded by a newer boot, or its token expired), or None when no PE
    of it ever got a go. The pipeline reads it once the laptop has left its PE: its
    installed OS answers where its last PE did."""
    boot = repository.latest_given_go(session, device_id)
    now = now or utcnow()
    if boot is None or boot.id is None or boot.registered_at is None:
        return None
    expires = boot.token_expires_at or boot.registered_at
    site = settings_of(session, boot.site_id)
    silent = now - boot.last_seen_at
    return PeBootView(
        boot_id=boot.id,
        device_id=boot.device_id,
        serial=boot.serial,
        address=boot.peer_address,
        ssh_port=boot.ssh_port,
        host_key=boot.host_key,
        host_key_fingerprint=boot.host_key_fingerprint,
        registered_at=boot.registered_at,
        last_heartbeat=boot.last_seen_at,
        token_expires_at=expires,
        alive=silent <= timedelta(seconds=site.silence_seconds),
        silent_for=silent,
        worker_key_path=site.worker_key_path,
        current=boot.status == BootStatus.REGISTERED and expires > now,
        ended_reason=_not_current_because(boot, expires, now),
    )


def _not_current_because(boot: PeBoot, expires: datetime, now: datetime) -> str | None:
    if boot.status == BootStatus.ENDED:
        return boot.ended_reason or "ended"
    if boot.status == BootStatus.WAITING:
        return f"told to wait: {boot.wait_reason}"
    return "its agent token expired" if expires <= now else None


def end_boot(session: Session, device_id: int, *, reason: str) -> bool:
    """End the laptop's current boot and revoke its token (the pipeline, once it reboots
    the laptop into its installed OS). True if there was one."""
    ended = False
    for boot in repository.boots_of_device(
        session, device_id, statuses=(BootStatus.WAITING, BootStatus.REGISTERED)
    ):
        close_boot(boot, utcnow(), reason)
        session.add(boot)
        ended = True
    session.flush()
    return ended


def request_action(session: Session, boot_id: int, action: str) -> PeBoot:
    """What the next heartbeat answers (``none``, ``poweroff``, ``reboot``).

    :raises BootNotFound: no such boot. :raises InvalidRegistration: unknown action.
    """
    if action not in _ACTIONS:
        raise InvalidRegistration(f"action must be one of {', '.join(_ACTIONS)}")
    boot = repository.get_boot(session, boot_id, for_update=True)
    if boot is None:
        raise BootNotFound(str(boot_id))
    boot.action = action
    session.add(boot)
    session.flush()
    return boot
