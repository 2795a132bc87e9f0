"""Netboot routes: what a laptop's iPXE fetches. No API token (firmware has none): the
link in the path is the authentication (``service``'s docstring says why and what it
protects), and the routes answer only from ``MASTERLINE_NETBOOT_NETWORKS`` when set."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import PlainTextResponse

from api.deps import SessionDep, new_router
from boot.netboot import service
from boot.netboot.files import MappedFileResponse

router = new_router(prefix="/boot/ipxe", tags=["boot"])

Link = Annotated[str, Path(max_length=100, description="The bench's netboot link.")]


def _from_bench_network(request: Request) -> None:
    service.from_bench_network(request.client.host if request.client else "")


@router.get("/{link}", response_class=PlainTextResponse, include_in_schema=False)
def ipxe_script(link: Link, request: Request, session: SessionDep) -> PlainTextResponse:
    """The bench's iPXE script (it carries the bench's enrollment credential)."""
    _from_bench_network(request)
    boot = service.check_link(session, link)
    script = service.ipxe_script(boot, base_url=str(request.base_url))
    return PlainTextResponse(script, headers={"Cache-Control": "no-store"})


@router.api_route("/{link}/pe/{version}/{name}", methods=["GET", "HEAD"], include_in_schema=False)
def pe_file(
    link: Link,
    version: Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9._-]+$")],
    name: Annotated[str, Path(max_length=20)],
    request: Request,
    session: SessionDep,
) -> MappedFileResponse:
    """The PE's kernel or initramfs (a stored version: a laptop booting while another
    version is made current finishes with the one its script named). Sent from a memory
    map, 200 laptops at a time (``files``' docstring says why); a site that sets
    ``MASTERLINE_NETBOOT_FILES_PORT`` has its scripts point at the sendfile server
    (``fileserver``) instead."""
    _from_bench_network(request)
    found = service.pe_file(session, link, version, name)
    return MappedFileResponse(found.path, media_type=found.media_type, immutable=found.immutable)


@router.api_route("/{link}/ipxe.efi", methods=["GET", "HEAD"], include_in_schema=False)
def ipxe_efi(link: Link, request: Request, session: SessionDep) -> MappedFileResponse:
    """Debian's iPXE for UEFI HTTP boot (the firmware fetches it from the DHCP answer's
    URL; iPXE then asks DHCP again and is given the bench's script). HEAD too: OVMF's
    HTTP boot asks for the file's size first and gives up on a 405
    (tests/boot/netboot/test_vm_uefi.py). From a memory map like the PE's files: every
    laptop of a wave fetches it at once."""
    _from_bench_network(request)
    found = service.ipxe_efi(session, link)
    return MappedFileResponse(found.path, media_type=found.media_type, immutable=found.immutable)
