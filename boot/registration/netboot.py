"""What registration adds to a bench's kernel command line: the bench's enrollment
credential (``masterline.enroll``) and, for an HTTPS API, the certificate pin
(``masterline.ca``). ``boot.netboot.service.kernel_args`` calls this for every bench."""

from __future__ import annotations

import logging

from sqlmodel import Session

from boot.registration.config import get_boot_settings
from boot.registration.credentials import netboot_secret
from inventory.models import Bench

log = logging.getLogger("masterline.boot")


def enrollment_kernel_args(session: Session, bench: Bench) -> dict[str, str]:
    """``masterline.enroll`` (and ``masterline.ca``) for ``bench``; without a live
    netboot credential for the bench or its site, nothing, and a warning that says
    what to do (the PE's agent then says it cannot register)."""
    args: dict[str, str] = {}
    secret = netboot_secret(session, bench)
    if secret is None:
        log.warning(
            "no enrollment credential for bench %s (site id %s): create one with "
            "`masterline boot credentials create --site SITE --bench %s`",
            bench.code,
            bench.site_id,
            bench.code,
        )
    else:
        args["masterline.enroll"] = secret
    pin = get_boot_settings().ca_sha256
    if pin:
        args["masterline.ca"] = pin
    return args


def register_kernel_arg_provider() -> bool:
    """Add the provider to boot-pe's list, once. False when network boot is not part of
    this build (``boot.netboot`` absent)."""
    try:
        from boot.netboot.service import KERNEL_ARG_PROVIDERS
    except ImportError:
        return False
    if enrollment_kernel_args not in KERNEL_ARG_PROVIDERS:
        KERNEL_ARG_PROVIDERS.append(enrollment_kernel_args)
    return True
