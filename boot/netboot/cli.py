"""``masterline boot dnsmasq-config``: the dnsmasq configuration of a bench's network
boot (run where the server runs: the bench's netboot link is computed from its
credential and the installation's secret key). With ``--secure-boot`` it also writes the
bench's TFTP root (``tftp``): shim, signed GRUB, the bench's grub.cfg and the PE."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from boot.netboot import dnsmasq, service, tftp
from boot.netboot.config import get_netboot_settings
from boot.pe.service import PeSettings
from core.console import console, err_console
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
        Path | None,
        typer.Option(
            help="TFTP root. Default: Debian's iPXE builds (/usr/lib/ipxe, package ipxe). "
            "With --secure-boot: required, a directory of the bench's own that Masterline "
            "writes."
        ),
    ] = None,
    secure_boot: Annotated[
        bool,
        typer.Option(
            help="Laptops keep Secure Boot on: UEFI PXE gets Debian's signed shim → GRUB → "
            "the PE's signed kernel, written into --tftp-root; BIOS is unchanged."
        ),
    ] = False,
    tftp_user: Annotated[
        str,
        typer.Option(help="With --secure-boot: the user dnsmasq runs as, owner of the files."),
    ] = "dnsmasq",
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Debian package cache (default ~/.cache/masterline/pe)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (mode 0600).")
    ] = None,
) -> None:
    """Print (or write) the dnsmasq configuration for a bench: proxy-DHCP or DHCP, TFTP
    chainloading iPXE (or, with --secure-boot, shim and signed GRUB), UEFI HTTP boot, and
    the bench's iPXE script URL."""
    if not api_url.startswith(("http://", "https://")):
        raise InvalidInput(f"--api-url must be an http:// or https:// URL, got {api_url!r}")
    ipxe_dir = get_netboot_settings().ipxe_dir
    if secure_boot and (tftp_root is None or tftp_root.resolve() == ipxe_dir.resolve()):
        raise InvalidInput(
            "--secure-boot writes the bench's TFTP root: give --tftp-root DIR, a directory "
            f"of its own (not {ipxe_dir})"
        )
    with get_database().session(write=False) as session:
        found = service.bench_by_code(session, site, bench)
        boot = service.bench_boot(session, found)
        link = boot.link
    url = f"{api_url.rstrip('/')}/boot/ipxe/{link}"
    files_url = f"{service.files_base(api_url)}/boot/ipxe/{link}"
    # The DHCP side is checked before anything is written to the TFTP root.
    p = dnsmasq.plan(
        script_url=url, interface=interface, subnet=subnet, dhcp_range=dhcp_range,
        router=router, tftp_root=tftp_root or ipxe_dir, secure_boot=secure_boot,
        files_url=files_url,
    )  # fmt: skip
    if secure_boot:
        assert tftp_root is not None
        written = tftp.write_root(
            tftp_root,
            boot=boot,
            api_url=get_netboot_settings().api_url or api_url,
            ipxe_dir=ipxe_dir,
            cache_dir=cache_dir or PeSettings().cache_dir,
            owner=tftp_user,
        )
        # Standard error when the configuration goes to standard output.
        (console if output else err_console).print(
            f"TFTP root {written.root}: PE {written.pe_version}, {len(written.files)} files "
            f"owned by {written.owner} (grub.cfg mode 0600: it carries the credential)",
            soft_wrap=True,
        )
    text = dnsmasq.render(p, title=f"bench {bench} of site {site}")
    if output is None:
        typer.echo(text, nl=False)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    console.print(f"written to {output}")
