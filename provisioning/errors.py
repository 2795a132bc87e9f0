"""Provisioning errors. The type says whether a retry can help (as MAAS's power drivers:
``PowerConnError`` retryable, ``PowerAuthError`` fatal)."""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, MasterlineError, NotFound, Unavailable


class ProvisioningError(MasterlineError):
    """A step failed. ``retryable`` tells the engine whether another attempt may help."""

    retryable: bool = False
    status_code = 409
    title = "Provisioning failed"


class TransportError(ProvisioningError):
    """Talking to a laptop failed (SSH or WinRM)."""


class ConnectFailed(TransportError):
    """Refused, dropped or timed out: the laptop may be rebooting; retry with backoff."""

    retryable = True


class CommandTimedOut(TransportError):
    retryable = True


class AuthFailed(TransportError):
    """Credentials rejected: retrying cannot help."""


class HostKeyMismatch(TransportError):
    """The laptop's SSH host key is not the one the site trusts: never proceed."""


class CommandFailed(ProvisioningError):
    """A command ran and exited non-zero."""


class NoLivePe(CommandFailed):
    """No provisioning environment of this laptop can be reached now: none registered
    yet, its registration ended or expired, or it went silent. The engine does not
    retry or fail the run for it: the run waits, queued, until the laptop's PE registers
    (``pipeline/execution.py``; docs/pipeline.md, "A laptop that registers its PE")."""


class IdentityMismatch(ProvisioningError):
    """The laptop on the bench is not the one that was scanned: nothing is written."""


class ChecksumMismatch(ProvisioningError):
    """What was read back from the disk is not what was sent."""


class DiskFull(ProvisioningError):
    pass


class RunConflict(Conflict):
    """The run cannot do that in its current state (e.g. retry a run that did not fail)."""


class EngineUnavailable(Unavailable):
    pass


class RunNotFound(NotFound):
    def __init__(self, what: str) -> None:
        super().__init__(f"provisioning run {what} not found")


class NotReadyToProvision(Conflict):
    """The device's client has no image or no configuration yet."""


class Aborted(ProvisioningError):
    """A technician aborted the run; the worker stops at the next safe point."""


class StepTimedOut(ProvisioningError):
    """A step ran past its own timeout (retryable: the next attempt starts afresh)."""

    retryable = True


class InvalidPlan(ProvisioningError):
    """The client's configuration cannot be applied to this laptop (fatal: a retry
    would plan the same thing)."""

    status_code = 422
    title = "Invalid configuration plan"


class ConfigureCancelled(ProvisioningError):
    """The run was aborted while the configuration was being applied."""


class GateFailed(ProvisioningError):
    """One or more of the client's checks failed (fatal: the laptop is not READY)."""

    def __init__(self, failed: list[dict[str, Any]]) -> None:
        names = ", ".join(f"{c['name']} ({c['detail']})" for c in failed)
        super().__init__(f"checks failed: {names}"[:900])
        self.failed = failed
