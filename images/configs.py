"""Client configurations: versions, write-only secrets, hostnames, and per-device
secrets for the provisioning pipeline.

Each ``set`` creates the next version for the client and makes it the active one (the
one new runs use); ``activate`` rolls back to an older version. Secrets (shared VPN
secrets in ``vpn.secrets``, per-device secrets) are encrypted at rest with
``core.vault`` and never leave through the API: read shapes carry their names only.
Only ``device_secrets`` returns them in clear, to the pipeline, in process.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import vault
from core.principal import Principal
from images import repository
from images.errors import ConfigNotFound, HostnameInvalid, InvalidConfig
from images.models import ClientConfig, DeviceSecret, ImageStatus, OsFamily
from images.schemas import (
    ALL_SECRET_NAMES,
    GENERATED_SECRET,
    VPN_SECRET_NAMES,
    AppConfig,
    ClientConfigBody,
    ClientConfigRead,
    DevicePublicKey,
    DeviceSecretMode,
    DeviceSecretsImport,
    PinnedImage,
    StoreRef,
    VpnKind,
    VpnRead,
)
from inventory import service as inventory
from inventory.models import ClientCompany, Device


def _client(session: Session, client_code: str, principal: Principal) -> ClientCompany:
    """:raises ClientNotFound: unknown, or another company's for a dsi caller."""
    client = inventory.client_by_code(session, client_code, principal)
    assert client.id is not None
    return client


def _check_store_ref(session: Session, client_id: int, ref: StoreRef, where: str) -> None:
    """A store reference must name an available file of this same client."""
    if ref.image_id is not None:
        row = repository.get_image(session, ref.image_id)
        ok = row is not None and row.client_id == client_id and row.status == ImageStatus.AVAILABLE
        if not ok:
            raise InvalidConfig(
                f"{where}: image {ref.image_id} is not an available image of this client"
            )
        return
    assert ref.sha256 is not None
    if repository.available_by_sha(session, client_id, ref.sha256) is None:
        raise InvalidConfig(f"{where}: no available image of this client has sha256 {ref.sha256}")


def _check_apps(session: Session, client_id: int, apps: Sequence[AppConfig], where: str) -> None:
    names = [a.name for a in apps]
    if len(set(names)) != len(names):
        raise InvalidConfig(f"{where}: app names must be unique")
    for app in apps:
        if isinstance(app.source, StoreRef):
            _check_store_ref(session, client_id, app.source, f"{where} {app.name}")


def set_config(
    session: Session,
    client_code: str,
    body: ClientConfigBody,
    principal: Principal,
    *,
    merge_secrets: bool = False,
) -> ClientConfig:
    """Store ``body`` as the client's next configuration version and activate it.

    ``vpn.secrets`` omitted keeps the previous active version's secrets (those that
    apply to the new VPN kind); ``{}`` clears them. With ``merge_secrets`` (the web
    console's editor, whose secret fields are write-only), the given secrets replace
    those of the same name and the others are kept.

    :raises ClientNotFound: see ``_client``.
    :raises InvalidConfig: an app or VPN client refers to a file that is not an
        available image of this client; duplicate app names.
    """
    client = _client(session, client_code, principal)
    assert client.id is not None
    apps = list(body.apps) + ([body.vpn.client_app] if body.vpn and body.vpn.client_app else [])
    _check_apps(session, client.id, apps, "apps")
    repository.lock_client(session, client.id)
    previous = repository.active_config(session, client.id)
    secrets: dict[str, str] = {}
    if body.vpn is not None:
        given = body.vpn.secrets
        if given is None or (merge_secrets and given):
            kept = vault.decrypt_map(previous.secrets_ciphertext) if previous else {}
            allowed = VPN_SECRET_NAMES[body.vpn.kind]
            secrets = {k: v for k, v in kept.items() if k in allowed}
            secrets.update({k: v.get_secret_value() for k, v in (given or {}).items()})
        else:
            secrets = {k: v.get_secret_value() for k, v in given.items()}
    document = body.model_dump(mode="json", exclude={"vpn": {"secrets"}})
    repository.deactivate_configs(session, client.id)
    row = ClientConfig(
        client_id=client.id,
        version=repository.next_config_version(session, client.id),
        active=True,
        body=document,
        secret_names=sorted(secrets),
        secrets_ciphertext=vault.encrypt_map(secrets) if secrets else None,
        created_by=principal.actor,
    )
    session.add(row)
    session.flush()
    return row


def list_configs(
    session: Session, client_code: str, principal: Principal
) -> tuple[ClientCompany, Sequence[ClientConfig]]:
    client = _client(session, client_code, principal)
    assert client.id is not None
    return client, repository.list_configs(session, client.id)


def get_config(
    session: Session, client_code: str, version: int | None, principal: Principal
) -> tuple[ClientCompany, ClientConfig]:
    """A version, or the active one when ``version`` is None.

    :raises ClientNotFound: see ``_client``. :raises ConfigNotFound: no such version.
    """
    client = _client(session, client_code, principal)
    assert client.id is not None
    if version is None:
        row = repository.active_config(session, client.id)
        if row is None:
            raise ConfigNotFound(f"of {client.code} (none set yet)")
    else:
        row = repository.get_config(session, client.id, version)
        if row is None:
            raise ConfigNotFound(f"{client.code} v{version}")
    return client, row


def activate(
    session: Session, client_code: str, version: int, principal: Principal
) -> tuple[ClientCompany, ClientConfig]:
    """Make an older (or newer) version the active one.

    :raises ClientNotFound, ConfigNotFound: see ``get_config``.
    """
    client, row = get_config(session, client_code, version, principal)
    assert client.id is not None
    repository.lock_client(session, client.id)
    repository.deactivate_configs(session, client.id)
    row.active = True
    session.add(row)
    session.flush()
    return client, row


def to_read(client: ClientCompany, row: ClientConfig) -> ClientConfigRead:
    body = ClientConfigBody.model_validate(row.body)
    vpn = None
    if body.vpn is not None:
        vpn = VpnRead(
            kind=body.vpn.kind,
            name=body.vpn.name,
            server=body.vpn.server,
            port=body.vpn.port,
            settings=dict(body.vpn.settings),
            client_app=body.vpn.client_app,
            device_secret=body.vpn.device_secret,
            secret_names=list(row.secret_names),
        )
    assert row.id is not None
    return ClientConfigRead(
        id=row.id,
        client_code=client.code,
        version=row.version,
        active=row.active,
        hostname_pattern=body.hostname_pattern,
        image=body.image,
        vpn=vpn,
        apps=body.apps,
        checks=body.checks,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def body_of(config: ClientConfig) -> ClientConfigBody:
    """The validated configuration document (without its secrets)."""
    return ClientConfigBody.model_validate(config.body)


def pinned_image(config: ClientConfig) -> PinnedImage | None:
    return body_of(config).image


# Hostnames.
_HOST_CHARS = re.compile(r"^[A-Za-z0-9-]+$")


def render_hostname(
    pattern: str, *, serial: str, asset_tag: str | None, client_code: str, os_family: OsFamily
) -> str:
    """Render a hostname pattern for one device and check the result.

    Windows needs a NetBIOS name: at most 15 characters; any host name: letters, digits
    and '-', at most 63 characters, not starting or ending with '-', not all digits.

    :raises HostnameInvalid: with the rendered name and what is wrong with it.
    """
    values = {"serial": serial, "asset_tag": asset_tag or serial, "client": client_code}
    name = re.sub(r"\{([a-z_]*)\}", lambda m: values.get(m.group(1), m.group(0)), pattern)
    limit = 15 if os_family == OsFamily.WINDOWS else 63
    problem = None
    if not _HOST_CHARS.match(name):
        problem = "only letters, digits and '-' are allowed"
    elif len(name) > limit:
        what = "a Windows (NetBIOS) name" if limit == 15 else "a host name label"
        problem = f"{len(name)} characters; {what} has at most {limit}"
    elif name.startswith("-") or name.endswith("-"):
        problem = "it may not start or end with '-'"
    elif name.isdigit():
        problem = "it may not be all digits"
    if problem:
        raise HostnameInvalid(
            f"hostname pattern {pattern!r} gives {name!r} for device {serial}: {problem}"
        )
    return name


def hostname_for(
    session: Session, config: ClientConfig, device: Device, os_family: OsFamily
) -> str:
    """:raises HostnameInvalid: see ``render_hostname``."""
    client = repository.client_codes(session, {config.client_id})
    return render_hostname(
        body_of(config).hostname_pattern,
        serial=device.serial,
        asset_tag=device.asset_tag,
        client_code=client.get(config.client_id, ""),
        os_family=os_family,
    )


# Secrets.
def _wireguard_keypair() -> tuple[str, str]:
    # Lazy: the server should not pay cryptography's memory until a key is made.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def device_secrets(session: Session, config: ClientConfig, device: Device) -> dict[str, str]:
    """The DECRYPTED secrets the pipeline needs for ``device`` under ``config``: the
    configuration's shared VPN secrets, overridden by the device's own. With
    ``device_secret: generate`` (WireGuard) a key pair is generated and stored
    (encrypted) the first time, so every later call returns the same key.

    In process only: never log, return over the API, or put them in an event.

    :raises InvalidConfig: the device is not this configuration's client's.
    :raises SecretKeyError: the secret key cannot decrypt what is stored.
    """
    if device.client_id != config.client_id or device.id is None:
        raise InvalidConfig(
            f"device {device.serial} is not a device of this configuration's client"
        )
    out = vault.decrypt_map(config.secrets_ciphertext)
    body = body_of(config)
    for row in repository.device_secrets(session, device.id):
        out[row.name] = vault.decrypt(row.ciphertext)
    vpn = body.vpn
    wants_key = (
        vpn is not None
        and vpn.kind is VpnKind.WIREGUARD
        and vpn.device_secret is DeviceSecretMode.GENERATE
    )
    if wants_key and GENERATED_SECRET not in out:
        out[GENERATED_SECRET] = _generate_device_key(session, config.client_id, device.id)
    return out


def _generate_device_key(session: Session, client_id: int, device_id: int) -> str:
    private, public = _wireguard_keypair()
    row = DeviceSecret(
        client_id=client_id,
        device_id=device_id,
        name=GENERATED_SECRET,
        ciphertext=vault.encrypt(private),
        public=public,
        origin="generated",
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another worker generated it first: use theirs, or the device gets two keys.
        existing = repository.get_device_secret(session, device_id, GENERATED_SECRET)
        assert existing is not None
        return vault.decrypt(existing.ciphertext)
    return private


def import_device_secrets(
    session: Session, client_code: str, body: DeviceSecretsImport, principal: Principal
) -> int:
    """Import per-device secrets (replacing any of the same name), all or nothing.

    :raises ClientNotFound: see ``_client``.
    :raises InvalidConfig: an unknown secret name or a serial not of this client.
    """
    client = _client(session, client_code, principal)
    assert client.id is not None
    for item in body.secrets:
        if item.name not in ALL_SECRET_NAMES:
            raise InvalidConfig(
                f"secret name '{item.name}' is not a VPN secret name "
                f"(known: {', '.join(sorted(ALL_SECRET_NAMES))})"
            )
    serials = {inventory.normalize_code(i.serial) for i in body.secrets}
    devices = repository.devices_by_serial(session, client.id, serials)
    missing = sorted(serials - set(devices))
    if missing:
        raise InvalidConfig(
            f"{len(missing)} serial(s) are not devices of {client.code}, first: {missing[0]}"
        )
    for item in body.secrets:
        device = devices[inventory.normalize_code(item.serial)]
        assert device.id is not None
        row = repository.get_device_secret(session, device.id, item.name) or DeviceSecret(
            client_id=client.id, device_id=device.id, name=item.name, ciphertext=""
        )
        row.ciphertext = vault.encrypt(item.value.get_secret_value())
        row.public = item.public
        row.origin = "imported"
        session.add(row)
    session.flush()
    return len(body.secrets)


def public_keys(session: Session, client_code: str, principal: Principal) -> list[DevicePublicKey]:
    """Per-device secrets of a client by name with their public halves (e.g. WireGuard
    public keys to register as peers); never the secret values.

    :raises ClientNotFound: see ``_client``.
    """
    client = _client(session, client_code, principal)
    assert client.id is not None
    return [
        DevicePublicKey(
            device_id=s.device_id,
            serial=serial,
            name=s.name,
            public=s.public,
            origin=s.origin,
            created_at=s.created_at,
        )
        for s, serial in repository.device_public_keys(session, client.id)
    ]
