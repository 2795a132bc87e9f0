"""The composition root: the one place where the domains' seams are connected.

Lower layers never import upper ones; they expose hooks instead (``inventory.hooks``,
``images.service.STILL_NEEDED``, ``provisioning.bootcontrol.registry``,
``provisioning.bootcontrol.registered.PE_LOOKUP``, ``boot.registration.service.ON_GO``,
``boot.netboot.service.KERNEL_ARG_PROVIDERS``), and this module
registers the upper layers' reactions into them. Every process that serves requests or
runs jobs calls ``wire()`` once at start: the API app (``api.app.create_app``), the
command line (``cli.main``), the demo, the test suite.
"""

from __future__ import annotations

from boot.registration import netboot as boot_netboot
from core import child
from forecast import hooks as forecast_hooks
from helpdesk import retention as helpdesk_retention
from lab import bootcontrol as lab_bootcontrol
from provisioning import hooks as provisioning_hooks
from wiring import boot as boot_wiring


def wire() -> None:
    """Register every hook (idempotent)."""
    provisioning_hooks.register()
    forecast_hooks.register()
    lab_bootcontrol.register()
    boot_netboot.register_kernel_arg_provider()
    boot_wiring.register()
    helpdesk_retention.register()
    # A child process (core.child) is wired like its parent, by this same function.
    if wire not in child.CHILD_INITIALIZERS:
        child.CHILD_INITIALIZERS.append(wire)
