"""Words for the domain's values, in plain language (translated when rendered).

Failures are explained by their cause (the error's type), not by the stack's wording:
a bench technician reads "the laptop in this slot is not the one that was scanned",
and the technical message stays one click away.
"""

from __future__ import annotations

from console.i18n import N_

ROLES = {
    "admin": N_("administrator"),
    "technician": N_("bench technician"),
    "dsi": N_("client IT"),
    "logistics": N_("logistics"),
    "monitoring": N_("monitoring"),
    "helpdesk": N_("help desk"),
}

STATES = {
    "expected": N_("expected"),
    "unexpected": N_("unexpected"),
    "received": N_("received"),
    "quarantined": N_("quarantined"),
    "queued": N_("queued"),
    "imaging": N_("imaging"),
    "configuring": N_("configuring"),
    "verifying": N_("verifying"),
    "ready": N_("ready"),
    "dispatched": N_("dispatched"),
    "delivered": N_("delivered"),
    "returned": N_("returned"),
    "retired": N_("retired"),
    "failed_imaging": N_("imaging failed"),
    "failed_configuring": N_("configuration failed"),
    "failed_verifying": N_("checks failed"),
}

STEPS = {
    "queue": N_("waiting for a worker"),
    "identify": N_("checking identity"),
    "pick_disk": N_("choosing the disk"),
    "stream": N_("writing the image"),
    "verify": N_("reading the disk back"),
    "installers": N_("copying installers"),
    "reboot": N_("rebooting"),
    "configure": N_("configuring VPN and tools"),
    "gate": N_("final checks"),
}

RUN_STATUSES = {
    "queued": N_("queued"),
    "running": N_("running"),
    "succeeded": N_("succeeded"),
    "failed": N_("failed"),
    "aborted": N_("aborted"),
}

CAUSES = {
    "IdentityMismatch": N_(
        "The laptop in this slot is not the one that was scanned: nothing was written."
    ),
    "ChecksumMismatch": N_("The disk read back differs from the image sent: bad disk or cable."),
    "ConnectFailed": N_(
        "The laptop does not answer on the network: check its cable and that it booted "
        "from the network."
    ),
    "AuthFailed": N_("The laptop refused the bench's credentials."),
    "HostKeyMismatch": N_(
        "The laptop's identity key is not the one expected: possible swap, do not go on."
    ),
    "InsecureTransport": N_("Refused to talk to the laptop over an unencrypted connection."),
    "CommandTimedOut": N_("The laptop stopped answering during a step."),
    "StepTimedOut": N_("A step took too long."),
    "StateTimedOut": N_("The laptop stayed too long in this stage."),
    "CommandFailed": N_("A command failed on the laptop."),
    "DiskFull": N_("The laptop's disk is too small for the image."),
    "GateFailed": N_("The final checks failed."),
    "InvalidPlan": N_("The client's configuration cannot be applied to this laptop."),
    "ConfigureCancelled": N_("Configuration was stopped."),
    "WinRMServerError": N_("Windows refused a configuration command."),
    "Aborted": N_("Stopped by a technician."),
}
UNKNOWN_CAUSE = N_("Failed during: %(step)s.")

CHECKS = {
    "image_hash": N_("disk content"),
    "hostname": N_("host name"),
    "vpn_profile": N_("VPN profile"),
    "apps": N_("applications"),
}

ERROR_TITLES = {
    400: N_("Bad request"),
    401: N_("Please sign in"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("Not possible now"),
    413: N_("Too large"),
    422: N_("Invalid input"),
    423: N_("Busy"),
    429: N_("Too many at once"),
    503: N_("Busy: try again"),
    507: N_("Disk full"),
}

RECONCILIATION = {
    "received": N_("received"),
    "missing": N_("missing"),
    "unexpected": N_("unexpected"),
    "wrong_model": N_("wrong model"),
}

IMAGE_STATUSES = {
    "uploading": N_("uploading"),
    "verifying": N_("verifying"),
    "available": N_("available"),
    "retired": N_("retired"),
}

DISK_HEALTH = {
    "ok": N_("disks healthy"),
    "warning": N_("a disk worn or with reallocated sectors"),
    "failing": N_("a disk failing"),
    "unknown": N_("disk health unknown"),
}
