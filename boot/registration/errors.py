"""Registration errors. Each refusal names its reason code (the ``reason`` field of the
problem body and of the supervisor's attempt record); none carries a secret."""

from __future__ import annotations

from boot.errors import SiteNotFound as SiteNotFound  # raised here too
from core.errors import Conflict, Forbidden, MasterlineError, NotFound, Unauthenticated


class BadEnrollmentCredential(Unauthenticated):
    """Missing, unknown, revoked or expired. One message for all: a guesser learns
    nothing about which."""

    def __init__(self) -> None:
        super().__init__("unknown, revoked or expired enrollment credential", reason="credential")


class BadAgentToken(Unauthenticated):
    def __init__(self) -> None:
        super().__init__(
            "unknown, expired or superseded agent token; register again", reason="agent_token"
        )


class RateLimited(MasterlineError):
    status_code = 429
    exit_code = 7
    title = "Too many requests"

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(
            f"too many {what}; retry in {retry_after} s",
            reason="rate_limited",
            retry_after=retry_after,
        )
        self.headers = {"Retry-After": str(retry_after)}


class Refused(MasterlineError):
    """A registration that will not be answered with a go; ``reason`` is a stable code."""

    reason: str = "refused"

    def __init__(self, message: str, *, device_id: int | None = None, **extra: object) -> None:
        super().__init__(message, reason=self.reason, **extra)
        # For the attempt record only; not in the problem body (the id of a laptop the
        # caller may not see).
        self.device_id = device_id


class UnknownSerial(Refused, NotFound):
    reason = "unknown_serial"


class AmbiguousSerial(Refused, Conflict):
    reason = "ambiguous_serial"


class OtherSite(Refused, Forbidden):
    reason = "other_site"


class OtherClient(Refused, Forbidden):
    reason = "other_client"


class NotImageable(Refused, Conflict):
    reason = "not_imageable"


class IdentityMismatch(Refused, Conflict):
    reason = "identity_mismatch"


class AddressMismatch(Refused, Conflict):
    reason = "address_mismatch"


class InvalidRegistration(Refused):
    status_code = 422
    exit_code = 2
    title = "Invalid input"
    reason = "invalid"


class Quarantined(Refused, Conflict):
    """The site's health policy found a fault: the laptop was quarantined, nothing
    will be written to it."""

    reason = "health_policy"


class CredentialNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"enrollment credential {ref} not found")


class BootNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"PE boot {ref} not found")
