"""HTTP routes of the image catalogue, uploads (plain PUT and tus) and client
configurations. Parse, call the service, render.

Upload routes are ``async`` and take no ``SessionDep``: a request that streams tens of
GB must not hold a database transaction (on SQLite, the write lock) while it does; they
open short sessions of their own (see ``images.upload``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.requests import ClientDisconnect

from api.deps import Allow, SessionDep, get_db, new_router
from core.principal import SYSTEM, Principal, Role
from images import configs, manifest, service, upload
from images.models import ImageStatus
from images.schemas import (
    ChunkManifestRead,
    ClientConfigBody,
    ClientConfigRead,
    DevicePublicKey,
    DeviceSecretsImport,
    DeviceSecretsImported,
    ImageDeclare,
    ImagePage,
    ImageRead,
)
from images.store import path_of
from images.stream import ClientGone

router = new_router()

Writer = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.DSI))]
"""Upload images and write configurations: admins, and a DSI for its own company."""
Reader = Annotated[Principal, Depends(Allow(Role.ADMIN, Role.TECHNICIAN, Role.DSI))]
"""Read the catalogue and configurations (never secrets); logistics cannot."""
Limit = Annotated[int, Query(ge=1, le=500)]

_NOT_VISIBLE: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown, or another company's (for a dsi token)."}
}


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body for ``images.upload``, Starlette's disconnect made ours."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as e:
        raise ClientGone() from e


def _read(session: Any, row: Any) -> ImageRead:
    return service.to_read(session, [row])[0]


@router.post(
    "/images",
    response_model=ImageRead,
    status_code=201,
    tags=["images"],
    responses={
        409: {"description": "That name and version exist already."},
        413: {"description": "Over the maximum image size."},
        429: {"description": "Too many uploads in progress for this client."},
    },
)
def declare_image(body: ImageDeclare, session: SessionDep, principal: Writer) -> ImageRead:
    """Declare an image version (name, version, size and sha256 of the file to upload),
    then send its bytes with `PUT /images/{id}/content` (one request) or the resumable
    tus protocol (`POST /uploads` with metadata `image_id`)."""
    return _read(session, service.declare(session, body, principal))


@router.get("/images", response_model=ImagePage, tags=["images"])
def list_images(
    session: SessionDep,
    principal: Reader,
    client: Annotated[str | None, Query(max_length=32, description="Client code.")] = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    status: ImageStatus | None = None,
    cursor: Annotated[int | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Limit = 100,
) -> ImagePage:
    """The catalogue, by id. A dsi token sees its own company's images only."""
    rows = service.list_images(
        session,
        principal,
        client_code=client,
        name=name,
        version=version,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    items = service.to_read(session, rows)
    return ImagePage.of(items, limit)


@router.get("/images/{image_id}", response_model=ImageRead, tags=["images"], responses=_NOT_VISIBLE)
def get_image(image_id: int, session: SessionDep, principal: Reader) -> ImageRead:
    return _read(session, service.get_image(session, image_id, principal))


@router.post(
    "/images/{image_id}/retire", response_model=ImageRead, tags=["images"], responses=_NOT_VISIBLE
)
def retire_image(image_id: int, session: SessionDep, principal: Writer) -> ImageRead:
    """Retire a published version: it never starts a new run again; `masterline images
    gc` reclaims its storage once no run needs it."""
    return _read(session, service.retire(session, image_id, principal))


@router.delete("/images/{image_id}", status_code=204, tags=["images"], responses=_NOT_VISIBLE)
def cancel_image(image_id: int, request: Request, principal: Writer) -> Response:
    """Cancel a declared image whose upload has not finished (published versions are
    immutable: retire them)."""
    db = get_db(request)
    with db.session() as session:
        upload_id = service.cancel(session, image_id, principal)
    upload.discard_partial(upload.get_store(), upload_id)
    return Response(status_code=204)


_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file itself as the raw body (not a form): exactly the declared "
        "size and sha256.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.put(
    "/images/{image_id}/content",
    response_model=ImageRead,
    tags=["uploads"],
    openapi_extra=_BINARY_BODY,
    responses={
        **_NOT_VISIBLE,
        409: {"description": "Already published."},
        413: {"description": "More bytes than declared."},
        422: {"description": "Size or sha256 differ from the declaration; nothing was published."},
        507: {"description": "The image store's disk is full."},
    },
)
async def put_content(image_id: int, request: Request, principal: Writer) -> ImageRead:
    """Upload the whole file in one request (scripts, small files), e.g.
    `curl -T image.raw -H "Authorization: Bearer $TOKEN" $API/images/7/content`.
    Verified against the declaration, then published; not resumable (use tus)."""
    db = get_db(request)
    row = await upload.put_content(request.headers, _body(request), db, image_id, principal)
    return await anyio.to_thread.run_sync(lambda: _read_fresh(request, row.id))


def _read_fresh(request: Request, image_id: int | None) -> ImageRead:
    with get_db(request).session(write=False) as session:
        return _read(session, service.get_image(session, int(image_id or 0), SYSTEM))


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": upload.TUS_VERSION, "Cache-Control": "no-store", **extra}


@router.options("/uploads", status_code=204, tags=["uploads"])
def tus_options(principal: Writer) -> Response:
    """tus discovery: version, extensions and maximum size."""
    from core.settings import get_settings

    return Response(
        status_code=204,
        headers=_tus_headers(
            **{
                "Tus-Version": upload.TUS_VERSION,
                "Tus-Extension": upload.TUS_EXTENSIONS,
                "Tus-Max-Size": str(get_settings().max_image_size),
            }
        ),
    )


@router.post(
    "/uploads",
    status_code=201,
    tags=["uploads"],
    responses={
        201: {"description": "Created; `Location` is the upload URL."},
        **_NOT_VISIBLE,
        412: {"description": "Tus-Resumable is not 1.0.0."},
    },
)
async def tus_create(request: Request, principal: Writer) -> Response:
    """tus creation (protocol 1.0.0): headers `Tus-Resumable: 1.0.0`, `Upload-Length`
    (the declared size) and `Upload-Metadata: image_id <base64 id>`. A new upload for an
    image replaces an abandoned one."""
    upload_id, _ = await upload.tus_create(request.headers, get_db(request), principal)
    location = str(request.url_for("tus_head", upload_id=upload_id))
    return Response(
        status_code=201, headers=_tus_headers(Location=location, **{"Upload-Offset": "0"})
    )


@router.head("/uploads/{upload_id}", tags=["uploads"], responses=_NOT_VISIBLE)
async def tus_head(upload_id: str, request: Request, principal: Writer) -> Response:
    """The server's offset (`Upload-Offset`): resume from there."""
    target = await upload.tus_head(get_db(request), upload_id, principal)
    return Response(
        status_code=200,
        headers=_tus_headers(
            **{"Upload-Offset": str(target.upload_offset), "Upload-Length": str(target.stored_size)}
        ),
    )


@router.patch(
    "/uploads/{upload_id}",
    status_code=204,
    tags=["uploads"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
    responses={
        **_NOT_VISIBLE,
        409: {"description": "Upload-Offset is not the server's offset."},
        423: {"description": "Another request is writing this upload."},
        422: {"description": "Complete but not what was declared: discarded."},
        507: {"description": "Disk full: the bytes so far are kept; resume later."},
    },
)
async def tus_patch(upload_id: str, request: Request, principal: Writer) -> Response:
    """Append bytes at `Upload-Offset` (`Content-Type: application/offset+octet-stream`).
    The last byte verifies size and sha256 and publishes the image."""
    offset, _ = await upload.tus_patch(
        request.headers, _body(request), get_db(request), upload_id, principal
    )
    return Response(status_code=204, headers=_tus_headers(**{"Upload-Offset": str(offset)}))


@router.delete("/uploads/{upload_id}", status_code=204, tags=["uploads"], responses=_NOT_VISIBLE)
async def tus_terminate(upload_id: str, request: Request, principal: Writer) -> Response:
    """tus termination: discard the bytes received so far (the image stays declared)."""
    await upload.tus_terminate(get_db(request), upload_id, principal)
    return Response(status_code=204, headers=_tus_headers())


@router.get(
    "/images/{image_id}/content",
    tags=["images"],
    responses={**_NOT_VISIBLE, 200: {"content": {"application/octet-stream": {}}}},
)
def download_image(image_id: int, session: SessionDep, principal: Reader) -> FileResponse:
    """The stored file (ranges supported), e.g. for a site cache."""
    row = service.get_image(session, image_id, principal)
    path = path_of(row)
    name = f"{row.name}-{row.version}.{'raw.zst' if row.format == 'raw+zstd' else 'raw'}"
    return FileResponse(path, media_type="application/octet-stream", filename=name)


@router.get(
    "/images/{image_id}/manifest",
    response_model=ChunkManifestRead,
    tags=["images"],
    responses=_NOT_VISIBLE,
)
def image_manifest(image_id: int, session: SessionDep, principal: Reader) -> ChunkManifestRead:
    """The stored file's chunk manifest (fixed chunk size, sha256 of each chunk and of the
    whole file): what each laptop of a relayed wave checks every chunk against.
    Computed on first request for an image published before manifests existed."""
    row = service.get_image(session, image_id, principal)
    found = manifest.manifest_of(row)
    assert row.id is not None
    return ChunkManifestRead(
        image_id=row.id,
        chunk_size=found.chunk_size,
        size=found.size,
        sha256=found.sha256,
        chunks=list(found.chunks),
    )


# Client configurations.
@router.post(
    "/clients/{client_code}/configs",
    response_model=ClientConfigRead,
    status_code=201,
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def set_config(
    client_code: str, body: ClientConfigBody, session: SessionDep, principal: Writer
) -> ClientConfigRead:
    """Store a new version of the client's configuration and make it active. Secrets in
    `vpn.secrets` are write-only: stored encrypted, never returned (only their names)."""
    row = configs.set_config(session, client_code, body, principal)
    client, _ = configs.get_config(session, client_code, row.version, principal)
    return configs.to_read(client, row)


@router.get(
    "/clients/{client_code}/configs",
    response_model=list[ClientConfigRead],
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def list_configs(
    client_code: str, session: SessionDep, principal: Reader
) -> list[ClientConfigRead]:
    """Every version, newest first."""
    client, rows = configs.list_configs(session, client_code, principal)
    return [configs.to_read(client, r) for r in rows]


@router.get(
    "/clients/{client_code}/configs/active",
    response_model=ClientConfigRead | None,
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def get_active_config(
    client_code: str, session: SessionDep, principal: Reader
) -> ClientConfigRead | None:
    """The version new runs use; `null` while the client has none."""
    client, rows = configs.list_configs(session, client_code, principal)
    active = next((r for r in rows if r.active), None)
    return configs.to_read(client, active) if active else None


@router.get(
    "/clients/{client_code}/configs/{version}",
    response_model=ClientConfigRead,
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def get_config(
    client_code: str, version: int, session: SessionDep, principal: Reader
) -> ClientConfigRead:
    return configs.to_read(*configs.get_config(session, client_code, version, principal))


@router.post(
    "/clients/{client_code}/configs/{version}/activate",
    response_model=ClientConfigRead,
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def activate_config(
    client_code: str, version: int, session: SessionDep, principal: Writer
) -> ClientConfigRead:
    """Make this version the active one (roll back or forward)."""
    return configs.to_read(*configs.activate(session, client_code, version, principal))


@router.put(
    "/clients/{client_code}/device-secrets",
    response_model=DeviceSecretsImported,
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def import_device_secrets(
    client_code: str, body: DeviceSecretsImport, session: SessionDep, principal: Writer
) -> DeviceSecretsImported:
    """Import per-device secrets by serial (WRITE-ONLY: stored encrypted, never
    returned), all or nothing."""
    count = configs.import_device_secrets(session, client_code, body, principal)
    return DeviceSecretsImported(imported=count)


@router.get(
    "/clients/{client_code}/device-keys",
    response_model=list[DevicePublicKey],
    tags=["configs"],
    responses=_NOT_VISIBLE,
)
def device_keys(client_code: str, session: SessionDep, principal: Reader) -> list[DevicePublicKey]:
    """Per-device secrets by name with their public halves (e.g. WireGuard public keys
    to register as peers on the VPN server); never the secrets themselves."""
    return configs.public_keys(session, client_code, principal)
