"""A bench's network boot: its netboot link, its kernel command line (Masterline's own
arguments plus what the providers add, e.g. registration's enrollment credential), and
its iPXE script.

**Why a link, and what it protects.** Firmware and iPXE cannot hold an API token, and
the script carries the bench's enrollment credential, so the script must not be readable
by whoever reaches the API. Each bench gets a link
``/boot/ipxe/<bench id>-<token>``; the token is an HMAC, under a key derived from the
installation's secret key, of the bench and of the kernel arguments the script reveals.
It cannot be guessed or forged; it is only ever written into that bench's DHCP
configuration (``masterline boot dnsmasq-config``); and it changes when what it reveals
changes: revoking or replacing the bench's credential kills the old link with the old
credential (regenerate the dnsmasq configuration then). ``MASTERLINE_NETBOOT_NETWORKS``
narrows the routes to the bench networks. What it cannot do: hide the credential from
the bench network itself, where DHCP answers are broadcast (docs/boot.md, threat model).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlmodel import Session, select

from boot.netboot.config import get_netboot_settings
from boot.netboot.errors import BadNetbootLink, NetbootNotWired
from boot.pe import repository as pe_catalogue
from core import vault
from core.errors import NotFound
from inventory.models import Bench, Site

log = logging.getLogger("masterline.boot")

KernelArgProvider = Callable[[Session, Bench], dict[str, str]]
KERNEL_ARG_PROVIDERS: list[KernelArgProvider] = []
"""Functions adding ``key=value`` arguments to a bench's PE command line (registration
adds ``masterline.enroll``, ``masterline.ca``); registered by ``wiring.wire()``."""

# Kernel arguments and iPXE lines are split on spaces: a value is one safe token.
SAFE = re.compile(r"^[A-Za-z0-9._:/+=@%,~-]{1,512}$")
LINK = re.compile(r"^(\d{1,12})-([A-Za-z0-9_-]{22,64})$")


@dataclass(frozen=True)
class BenchBoot:
    bench: Bench
    site: Site
    args: dict[str, str]

    @property
    def link(self) -> str:
        return f"{self.bench.id}-{_token(self.bench, self.args)}"


def kernel_args(session: Session, bench: Bench, site: Site) -> dict[str, str]:
    """What the bench's PE is told besides the API address: the bench and site codes and
    every provider's arguments (a value that is not one safe token is left out)."""
    if not KERNEL_ARG_PROVIDERS:
        raise NetbootNotWired()
    args = {"masterline.bench": bench.code, "masterline.site": site.code}
    for provider in KERNEL_ARG_PROVIDERS:
        for key, value in provider(session, bench).items():
            if SAFE.match(key) and SAFE.match(value):
                args[key] = value
            else:
                log.error("kernel argument %s left out: not a single safe token", key)
    return args


def _token(bench: Bench, args: dict[str, str]) -> str:
    message = f"{bench.id}\n" + "".join(f"{k}={v}\n" for k, v in sorted(args.items()))
    mac = hmac.new(vault.derived_key("netboot-link"), message.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")


def bench_boot(session: Session, bench: Bench) -> BenchBoot:
    site = session.get(Site, bench.site_id)
    if site is None:  # a foreign key: cannot happen
        raise NotFound(f"site of bench {bench.code} not found")
    return BenchBoot(bench, site, kernel_args(session, bench, site))


def bench_by_code(session: Session, site_code: str, bench_code: str) -> Bench:
    bench = session.exec(
        select(Bench).join(Site).where(Site.code == site_code, Bench.code == bench_code)
    ).first()
    if bench is None:
        raise NotFound(f"bench {bench_code} of site {site_code} not found")
    return bench


def check_link(session: Session, link: str) -> BenchBoot:
    """The bench a genuine, current link is for.

    :raises BadNetbootLink: made up, stale, or of a bench that no longer exists.
    """
    m = LINK.match(link)
    if m is None:
        raise BadNetbootLink()
    bench = session.get(Bench, int(m.group(1)))
    if bench is None:
        raise BadNetbootLink()
    boot = bench_boot(session, bench)
    if not hmac.compare_digest(boot.link, link):
        raise BadNetbootLink()
    return boot


def from_bench_network(peer: str) -> None:
    """A netboot request from ``peer`` (an address) is answered only from the bench
    networks, when ``MASTERLINE_NETBOOT_NETWORKS`` names them.

    :raises BadNetbootLink: from elsewhere (the same answer as a made-up link).
    """
    allowed = get_netboot_settings().allowed()
    if not allowed:
        return
    try:
        address = ipaddress.ip_address(peer)
    except ValueError as e:
        raise BadNetbootLink() from e
    if not any(address in net for net in allowed):
        raise BadNetbootLink()


@dataclass(frozen=True)
class BootFile:
    """A file a booting laptop fetches, as both servers send it (the API's routes and
    the sendfile server, ``fileserver``)."""

    path: Path
    media_type: str
    immutable: bool
    """Never changes under its URL (a PE version): a cache in between may keep it."""


def pe_file(session: Session, link: str, version: str, name: str) -> BootFile:
    """The PE's kernel or initramfs of a stored version, for a genuine link (a laptop
    booting while another version is made current finishes with the one its script
    named).

    :raises BadNetbootLink: the link is not genuine.
    :raises PeNotFound: no such version or file.
    """
    check_link(session, link)
    return BootFile(pe_catalogue.file_path(version, name), "application/octet-stream", True)


def ipxe_efi(session: Session, link: str) -> BootFile:
    """Debian's ``ipxe.efi`` for UEFI HTTP boot, for a genuine link. Not immutable: a
    package upgrade replaces it.

    :raises BadNetbootLink: the link is not genuine, or iPXE is not installed.
    """
    check_link(session, link)
    path = get_netboot_settings().ipxe_dir / "ipxe.efi"
    if not path.is_file():
        raise BadNetbootLink()
    return BootFile(path, "application/efi", False)


def files_base(base_url: str) -> str:
    """Where laptops fetch the boot files: the sendfile server's port on the host they
    reached (``MASTERLINE_NETBOOT_FILES_PORT``), else the API at ``base_url`` itself."""
    port = get_netboot_settings().files_port
    if port is None:
        return base_url.rstrip("/")
    host = urlsplit(base_url).hostname or "127.0.0.1"
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


def pe_cmdline(boot: BenchBoot, *, api_url: str) -> str:
    """The PE's kernel command line (consoles, ``masterline.api`` and the bench's
    arguments): the same whether iPXE or Secure Boot's GRUB loads the kernel. It carries
    the bench's enrollment credential: never log it."""
    args = {"masterline.api": api_url.rstrip("/"), **boot.args}
    return " ".join(
        [get_netboot_settings().console, "quiet"] + [f"{k}={v}" for k, v in args.items()]
    )


def ipxe_script(boot: BenchBoot, *, base_url: str) -> str:
    """The bench's iPXE script: the current PE's kernel and initramfs from this server
    (or its sendfile server, ``files_base``), the command line with the API address and
    the providers' arguments."""
    settings = get_netboot_settings()
    version = pe_catalogue.current_version()
    header = (
        f"#!ipxe\n# Masterline network boot, bench {boot.bench.code} of site {boot.site.code}\n"
    )
    if version is None:
        log.error("a laptop network-booted but no PE is built: run `masterline pe build`")
        return header + (
            "echo Masterline: no preboot environment is built on the server "
            "(masterline pe build); retrying in 60 s\nsleep 60\nreboot\n"
        )
    files = f"{files_base(base_url)}/boot/ipxe/{boot.link}/pe/{version}"
    cmdline = "initrd=initrd.img " + pe_cmdline(boot, api_url=settings.api_url or base_url)
    return header + (
        f"echo Masterline: PE {version}\n"
        f"kernel {files}/{pe_catalogue.KERNEL} {cmdline}\n"
        f"initrd --name initrd.img {files}/{pe_catalogue.INITRD}\n"
        "boot\n"
    )
