"""``masterline boot dnsmasq-config``: the dnsmasq configuration of a bench's network
boot (run where the server runs: the bench's netboot link is computed from its
credential and the installation's secret key)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from boot.netboot import dnsmasq, service
from core.console import console
from core.db import get_database
from core.errors import InvalidInput


def dnsmasq_config(
    site: Annotated[str, typer.Option(help="Site code.")],
    bench: Annotated[str, typer.Option(help="Bench code.")],
    api_url: Annotated[
        str, typer.Option(help="Masterline's address as the bench network reaches it.")
    ],
    interface: Annotated[str, typer.Option(help="dnsmasq's interface on the bench network.")],
    subnet: Annotated[str, typer.Option(help="The bench network, e.g. 192.168.10.0/24.")],
    dhcp_range: Annotated[
        str | None,
        typer.Option(
            "--range",
            help="FIRST,LAST: dnsmasq is the bench network's DHCP server. Without it, "
            "proxy-DHCP beside the site's own DHCP server.",
        ),
    ] = None,
    router: Annotated[str | None, typer.Option(help="Default gateway (with --range).")] = None,
    tftp_root: Annotated[
        Path, typer.Option(help="Where Debian's iPXE builds are (package ipxe).")
    ] = Path("/usr/lib/ipxe"),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (mode 0600).")
    ] = None,
) -> None:
    """Print (or write) the dnsmasq configuration for a bench: proxy-DHCP or DHCP, TFTP
    chainloading iPXE, UEFI HTTP boot, and the bench's iPXE script URL."""
    if not api_url.startswith(("http://", "https://")):
        raise InvalidInput(f"--api-url must be an http:// or https:// URL, got {api_url!r}")
    with get_database().session(write=False) as session:
        found = service.bench_by_code(session, site, bench)
        boot = service.bench_boot(session, found)
        link = boot.link
    url = f"{api_url.rstrip('/')}/boot/ipxe/{link}"
    p = dnsmasq.plan(
        script_url=url,
        interface=interface,
        subnet=subnet,
        dhcp_range=dhcp_range,
        router=router,
        tftp_root=tftp_root,
    )
    text = dnsmasq.render(p, title=f"bench {bench} of site {site}")
    if output is None:
        typer.echo(text, nl=False)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    console.print(f"written to {output}")
