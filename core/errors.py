"""The one base error. Domains subclass it beside their service (``<domain>/errors.py``).

The API renders it as ``application/problem+json`` with its status; the CLI prints its
message on one line and exits with its exit code. A user never sees a traceback for it.
"""

from __future__ import annotations

from typing import Any


class MasterlineError(Exception):
    """A failure we expected and can explain in one line."""

    status_code: int = 400
    exit_code: int = 1
    title: str = "Bad request"
    # HTTP headers for the problem response (``Retry-After`` on a 429); never secrets.
    headers: dict[str, str] | None = None

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        # Extra fields go into the problem body (e.g. ``current_state``); never secrets.
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as what it is, whatever its subclass's __init__ takes: errors cross
        # from a child process (core.child) and must reach the user unchanged.
        return (_rebuild, (type(self), self.args, self.__dict__))

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:masterline:error:{type(self).__name__}",
            "title": self.title,
            "status": self.status_code,
            "detail": self.message,
        }
        body.update(self.extra)
        return body


def _rebuild(
    cls: type[MasterlineError], args: tuple[Any, ...], state: dict[str, Any]
) -> MasterlineError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class NotFound(MasterlineError):
    status_code = 404
    exit_code = 4
    title = "Not found"


class Conflict(MasterlineError):
    status_code = 409
    exit_code = 5
    title = "Conflict"


class InvalidInput(MasterlineError):
    status_code = 422
    exit_code = 2
    title = "Invalid input"


class FileRejected(InvalidInput):
    """An uploaded file (CSV) with errors: every error listed with its line and column,
    and nothing written."""

    title = "File rejected"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {}
        where = f"line {first.get('line')}, column {first.get('column')}" if first else ""
        super().__init__(
            f"{len(errors)} error(s) in file; first at {where}: {first.get('message', '')}",
            errors=errors,
        )


class Unauthenticated(MasterlineError):
    status_code = 401
    exit_code = 6
    title = "Unauthenticated"


class Forbidden(MasterlineError):
    status_code = 403
    exit_code = 6
    title = "Forbidden"


class TooLarge(MasterlineError):
    status_code = 413
    exit_code = 2
    title = "Payload too large"


class Unavailable(MasterlineError):
    status_code = 503
    exit_code = 7
    title = "Unavailable"


class DatabaseBusy(Unavailable):
    """A lock wait timed out or the database is unreachable: retrying can help."""

    title = "Database busy"
    headers = {"Retry-After": "1"}  # (read, never mutated)


class DatabaseFull(MasterlineError):
    """The disk under the database is full (SQLite ``SQLITE_FULL``, PostgreSQL SQLSTATE
    53100): the transaction was rolled back; retrying helps only once space is freed."""

    status_code = 507
    exit_code = 7
    title = "Database disk is full"
