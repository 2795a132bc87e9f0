"""Bench enrollment credentials: creation (shown once), listing, revocation, and the
check a registering PE goes through.

A credential is a 256-bit random string; its SHA-256 is what lookups use. A netboot
credential is also kept encrypted (``core.vault``) because the bench's iPXE script, which
firmware fetches without authentication, must carry it on every boot: that is why a
credential is scoped to one site, only registers laptops expected or received there, is
rate-limited and revocable, and why revocation takes effect on the next request (no
cache).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from boot.registration import repository
from boot.registration.errors import BadEnrollmentCredential, CredentialNotFound, SiteNotFound
from boot.registration.models import EnrollmentCredential, RegistrationAttempt
from boot.registration.schemas import CredentialCreate, CredentialRead
from core.errors import InvalidInput
from core.principal import Principal
from core.timeutil import utcnow
from inventory import repository as inventory_repo
from inventory.models import Bench

CREDENTIAL_PREFIX = "mle_"
AGENT_TOKEN_PREFIX = "mla_"  # noqa: S105


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Enrollment:
    """An authenticated enrollment credential, as the registration service sees it."""

    credential_id: int
    name: str
    site_id: int
    bench_id: int | None
    client_id: int | None


def create_credential(
    session: Session, body: CredentialCreate, principal: Principal
) -> tuple[EnrollmentCredential, str]:
    """Create a credential; returns the row and the clear credential (shown once).

    :raises InvalidInput: unknown site, bench or client.
    """
    site = inventory_repo.get_site_by_code(session, body.site_code)
    if site is None or site.id is None:
        raise InvalidInput(f"site {body.site_code} not found")
    bench_id = None
    if body.bench_code is not None:
        bench = _bench_of_site(session, site.id, body.bench_code)
        if bench is None:
            raise InvalidInput(f"bench {body.bench_code} not found at site {body.site_code}")
        bench_id = bench.id
    client_id = None
    if body.client_code is not None:
        client = inventory_repo.get_client_by_code(session, body.client_code)
        if client is None:
            raise InvalidInput(f"client company {body.client_code} not found")
        client_id = client.id
    clear = new_secret(CREDENTIAL_PREFIX)
    ciphertext = None
    if body.netboot:
        from core.vault import encrypt

        ciphertext = encrypt(clear)
    now = utcnow()
    row = EnrollmentCredential(
        name=body.name,
        prefix=clear[:12],
        secret_hash=hash_secret(clear),
        secret_ciphertext=ciphertext,
        site_id=site.id,
        bench_id=bench_id,
        client_id=client_id,
        created_by=principal.actor,
        created_at=now,
        expires_at=now + timedelta(days=body.expires_in_days) if body.expires_in_days else None,
    )
    session.add(row)
    session.flush()
    return row, clear


def _bench_of_site(session: Session, site_id: int, code: str) -> Bench | None:
    for bench in inventory_repo.list_benches(session):
        if bench.site_id == site_id and bench.code == code:
            return bench
    return None


def to_read(row: EnrollmentCredential) -> CredentialRead:
    assert row.id is not None
    return CredentialRead(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        site_id=row.site_id,
        bench_id=row.bench_id,
        client_id=row.client_id,
        netboot=row.secret_ciphertext is not None,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def list_credentials(
    session: Session, *, site_code: str | None, include_revoked: bool
) -> Sequence[EnrollmentCredential]:
    """:raises SiteNotFound: unknown site."""
    site_id = None
    if site_code is not None:
        site = inventory_repo.get_site_by_code(session, site_code)
        if site is None:
            raise SiteNotFound(site_code)
        site_id = site.id
    return repository.list_credentials(session, site_id=site_id, include_revoked=include_revoked)


def revoke_credential(session: Session, credential_id: int) -> EnrollmentCredential:
    """Revoke at once; the encrypted copy is erased (it will never be served again).

    :raises CredentialNotFound: no such credential.
    """
    row = repository.get_credential(session, credential_id)
    if row is None:
        raise CredentialNotFound(str(credential_id))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    row.secret_ciphertext = None
    session.add(row)
    session.flush()
    return row


def check(session: Session, clear: str, *, now: datetime | None = None) -> EnrollmentCredential:
    """The live credential ``clear`` is, for a registration.

    :raises BadEnrollmentCredential: unknown, revoked or expired (one message for all).
    """
    row = repository.credential_by_hash(session, hash_secret(clear))
    if row is None or row.id is None or not is_live(row, now or utcnow()):
        raise BadEnrollmentCredential()
    return row


def is_live(row: EnrollmentCredential, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def record_dead_credential_use(session: Session, clear: str, *, peer: str) -> bool:
    """Record, for the supervisor, that a revoked or expired credential was presented
    (a stick or a script still holding it). Unknown values are not recorded: they are
    noise, and the per-address limit already slows guessing. True if recorded."""
    row = repository.credential_by_hash(session, hash_secret(clear))
    if row is None or row.id is None or is_live(row, utcnow()):
        return False
    reason = "revoked_credential" if row.revoked_at is not None else "expired_credential"
    session.add(
        RegistrationAttempt(
            credential_id=row.id,
            site_id=row.site_id,
            bench_id=row.bench_id,
            peer_address=peer[:64],
            outcome="refused",
            reason=reason,
            detail=f"credential {row.prefix}… ({row.name}) is no longer valid"[:500],
        )
    )
    session.flush()
    return True


def enrollment_of(row: EnrollmentCredential) -> Enrollment:
    assert row.id is not None
    return Enrollment(
        credential_id=row.id,
        name=row.name,
        site_id=row.site_id,
        bench_id=row.bench_id,
        client_id=row.client_id,
    )


def netboot_secret(session: Session, bench: Bench) -> str | None:
    """The clear credential the bench's network boot hands to its PEs: the newest live
    netboot credential of that bench, else of its site with no bench. None if none."""
    now = utcnow()
    candidates = [
        c for c in repository.netboot_credentials(session, bench.site_id) if is_live(c, now)
    ]
    chosen = next((c for c in candidates if c.bench_id == bench.id), None) or next(
        (c for c in candidates if c.bench_id is None), None
    )
    if chosen is None or chosen.secret_ciphertext is None:
        return None
    from core.vault import decrypt

    return decrypt(chosen.secret_ciphertext)
