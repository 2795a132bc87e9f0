"""A site's registration settings and where deliveries are staged (admin)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from boot.registration import repository
from boot.registration.errors import SiteNotFound
from boot.registration.models import BootSiteSettings, DeliverySite
from boot.registration.schemas import (
    DeliverySiteRead,
    SiteSettingsRead,
    SiteSettingsUpdate,
)
from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.models import Site

MAX_KEY_FILE = 16 * 1024


def settings_of(session: Session, site_id: int) -> BootSiteSettings:
    """The site's registration settings (the defaults for a site that set none)."""
    return repository.site_settings(session, site_id) or BootSiteSettings(site_id=site_id)


def site_by_code(session: Session, code: str) -> Site:
    """:raises SiteNotFound: no such site."""
    site = inventory_repo.get_site_by_code(session, code)
    if site is None or site.id is None:
        raise SiteNotFound(code)
    return site


def read_settings(session: Session, site_code: str) -> SiteSettingsRead:
    site = site_by_code(session, site_code)
    assert site.id is not None
    return _read(site, settings_of(session, site.id))


def _read(site: Site, row: BootSiteSettings) -> SiteSettingsRead:
    return SiteSettingsRead(
        site_code=site.code,
        registration_is_scan_in=row.registration_is_scan_in,
        worker_key_path=row.worker_key_path,
        worker_public_keys=list(row.worker_public_keys or []),
        heartbeat_seconds=row.heartbeat_seconds,
        silence_seconds=row.silence_seconds,
        allow_address_mismatch=row.allow_address_mismatch,
    )


def update_settings(session: Session, site_code: str, body: SiteSettingsUpdate) -> SiteSettingsRead:
    """Change the fields given; a worker key path is read (its ``.pub``) now.

    :raises SiteNotFound: no such site.
    :raises InvalidInput: unreadable key file, not a public key line, or a silence
        shorter than two heartbeats.
    """
    site = site_by_code(session, site_code)
    assert site.id is not None
    row = repository.site_settings(session, site.id) or BootSiteSettings(site_id=site.id)
    given = body.model_dump(exclude_unset=True, exclude_none=True)
    _set_worker_keys(row, given.pop("worker_key_path", None), given.pop("worker_public_keys", None))
    for key, value in given.items():
        setattr(row, key, value)
    if row.silence_seconds < 2 * row.heartbeat_seconds:
        raise InvalidInput(
            f"silence_seconds ({row.silence_seconds}) must be at least two heartbeats "
            f"({2 * row.heartbeat_seconds}): one lost heartbeat must not end a boot"
        )
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return _read(site, row)


def _set_worker_keys(
    row: BootSiteSettings, key_path: str | None, public_keys: list[str] | None
) -> None:
    """The keys handed to PEs always include the key the worker logs in with.

    The worker logs into a PE with ``worker_key_path``; the PE lets in only
    ``worker_public_keys``. If the two disagreed, every laptop of the site would register
    and then fail its first step with an opaque authentication error, so the disagreement
    is refused here, when an admin can still fix it.
    """
    path_line = None
    if key_path is not None:
        path_line = _public_line(Path(f"{key_path}.pub"))
        old_line = (
            row.worker_public_keys[0] if row.worker_key_path and row.worker_public_keys else None
        )
        kept = [k for k in row.worker_public_keys or [] if k != old_line]
        row.worker_key_path = key_path
        row.worker_public_keys = [path_line, *(k for k in kept if k != path_line)]
    if public_keys is not None:
        lines = list(dict.fromkeys(_check_line(line) for line in public_keys))
        if path_line is not None:
            lines = [path_line, *(k for k in lines if k != path_line)]
        elif row.worker_key_path and lines:
            # An empty list is a deliberate pause: PEs wait, visibly ("no worker key").
            own = _public_line(Path(f"{row.worker_key_path}.pub"))
            if own not in lines:
                raise InvalidInput(
                    "worker_public_keys leaves out the key of worker_key_path "
                    f"({row.worker_key_path}): the worker could not log into the PEs; "
                    "include its public key line, or set worker_key_path in the same change"
                )
            lines = [own, *(k for k in lines if k != own)]
        row.worker_public_keys = lines


def _public_line(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise InvalidInput(f"cannot read the worker's public key {path} ({e.strerror})") from e
    if len(data) > MAX_KEY_FILE:
        raise InvalidInput(f"{path} is not an SSH public key (too large)")
    return _check_line(data.decode(errors="replace").strip())


def _check_line(line: str) -> str:
    parts = line.strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")) or "PRIVATE" in line:
        raise InvalidInput("not an OpenSSH public key line (ssh-ed25519 AAAA… comment)")
    return " ".join(parts[:3])[:1000]


def set_delivery_site(
    session: Session, delivery_id: int, site_code: str, principal: Principal
) -> DeliverySiteRead:
    """Stage a delivery at one site: PEs of other sites are refused its laptops.

    :raises DeliveryNotFound: no such delivery. :raises SiteNotFound: no such site.
    """
    delivery = inventory.get_delivery(session, delivery_id, principal)
    site = site_by_code(session, site_code)
    assert delivery.id is not None and site.id is not None
    row = repository.delivery_site(session, delivery.id) or DeliverySite(
        delivery_id=delivery.id, site_id=site.id, assigned_by=principal.actor
    )
    row.site_id = site.id
    row.assigned_by = principal.actor
    row.assigned_at = utcnow()
    session.add(row)
    session.flush()
    return DeliverySiteRead(
        delivery_id=delivery.id,
        site_code=site.code,
        assigned_by=row.assigned_by,
        assigned_at=row.assigned_at,
    )
