"""WinRM transport (pywinrm's ``winrm.Protocol``) behind the one ``Transport`` Protocol.

Only two secure shapes are accepted, and the refusal is in code, not in a comment:

- ``ssl``: HTTPS (5986), the server certificate validated against ``ca_path`` (or the
  system store when no CA file is given); validation can never be switched off here.
- ``ntlm``: NTLM with ``message_encryption="always"``, so every envelope is sealed even
  over HTTP (over HTTPS too when a CA is given).

Basic or plaintext authentication over HTTP would send the local administrator's
password in the clear to every laptop on the bench network: ``InsecureTransport``.

PowerShell scripts go to ``powershell.exe -NoProfile -NonInteractive -Command -`` on
stdin (``send_command_input``), never on the command line: Windows caps a command line
at 8191 characters and pywinrm's ``run_ps`` base64-encodes the script into it, which
breaks on scripts over ~3 k characters (pywinrm#184).

Every library exception is translated here, with ``raise ... from``, into
``provisioning.errors``; the type says whether a retry can help. No message ever carries
the password (it is also scrubbed from any text, in case a library echoes it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import requests
from pydantic import SecretStr
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from provisioning.errors import (
    AuthFailed,
    CommandTimedOut,
    ConnectFailed,
    HostKeyMismatch,
    TransportError,
)
from provisioning.transports.base import (
    CommandResult,
    ProgressCallback,
    StreamResult,
    WinRMTransportKind,
)

POWERSHELL_STDIN = "powershell.exe -NoProfile -NonInteractive -Command -"

# WSManFault code for "the operation timed out" on Receive: the command is still running.
_WSMAN_OPERATION_TIMEOUT = 2150858793
# One Send envelope carries at most this many stdin bytes: base64 (4/3) plus the SOAP
# envelope and the NTLM seal must stay well under pywinrm's MaxEnvelopeSize (153600).
_STDIN_CHUNK = 48 * 1024
_OPERATION_TIMEOUT_SEC = 20
_READ_TIMEOUT_SEC = 30
_UTF8_CODEPAGE = 65001
# A server that answers "still running" at once (rather than after the operation
# timeout, as Windows does) must not make us spin.
_RECEIVE_PAUSE = 0.05

T = TypeVar("T")


class InsecureTransport(TransportError):
    """A WinRM shape that would expose credentials or traffic (basic/plaintext over HTTP,
    certificate validation off): refused before any connection."""

    status_code = 422
    title = "Insecure WinRM transport"


class ServerCertificateRejected(HostKeyMismatch):
    """The laptop's HTTPS certificate does not chain to the CA the site trusts (or does
    not name the host): the same verdict as an unknown SSH host key, never retried."""


class CallCancelled(TransportError):
    """The caller's ``cancel`` callback said stop (the run was aborted) while a call was
    in flight; the remote shell, and what runs in it, was closed."""


class WinRMServerError(TransportError):
    """The WinRM service answered with an HTTP error or a WS-Management fault.

    5xx and unknown faults are retryable (the service may still be starting after the
    first boot); 4xx other than 401 mean we sent something it will never accept."""


class WinRMTransport:
    """One WinRM endpoint of one laptop. Commands share one remote shell, opened lazily
    and closed by ``close()``; use as a context manager."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        transport: WinRMTransportKind | str,
        username: str,
        password: SecretStr,
        ca_path: str | None = None,
        operation_timeout_sec: int = _OPERATION_TIMEOUT_SEC,
        read_timeout_sec: int = _READ_TIMEOUT_SEC,
        cancel: Callable[[], bool] | None = None,
        cancel_poll_sec: float = 1.0,
    ) -> None:
        """``cancel`` is polled (at most every ``cancel_poll_sec``) while a command runs:
        between Send envelopes and between Receives, which Windows holds for up to
        ``operation_timeout_sec`` — so an abort stops a call within about that long.

        :raises InsecureTransport: any transport but ``ssl`` or ``ntlm``."""
        try:
            kind = WinRMTransportKind(str(transport).lower())
        except ValueError:
            raise InsecureTransport(
                f"WinRM transport {transport!r} refused: use 'ssl' (HTTPS with certificate "
                "validation) or 'ntlm' (message encryption); basic/plaintext over HTTP "
                "would expose the password"
            ) from None
        if not username:
            raise AuthFailed(f"WinRM {host}:{port}: no username configured")
        self._secret = password.get_secret_value()
        if not self._secret:
            raise AuthFailed(f"WinRM {host}:{port}: no password configured")
        self.host = host
        self.port = port
        self.kind = kind
        https = kind is WinRMTransportKind.SSL or ca_path is not None
        self.endpoint = f"{'https' if https else 'http'}://{host}:{port}/wsman"
        self.label = f"WinRM {host}:{port} ({kind.value})"
        self._protocol = Protocol(
            endpoint=self.endpoint,
            transport="ssl" if kind is WinRMTransportKind.SSL else "ntlm",
            username=username,
            password=self._secret,
            # An explicit CA file, or the system store: never "ignore".
            server_cert_validation="validate",
            # None (not "legacy_requests"): no REQUESTS_CA_BUNDLE from the environment
            # can swap the trust store under us.
            ca_trust_path=ca_path if ca_path else None,  # type: ignore[arg-type]
            # NTLM: every envelope sealed, even over HTTP. HTTPS basic: TLS protects it.
            message_encryption="always" if kind is WinRMTransportKind.NTLM else "auto",
            operation_timeout_sec=operation_timeout_sec,
            read_timeout_sec=read_timeout_sec,
            # Lab and bench traffic must not wander through an environment proxy.
            proxy=None,
        )
        self._shell_id: str | None = None
        self._cancel = cancel
        self._cancel_poll = cancel_poll_sec
        self._cancel_checked = 0.0

    def __enter__(self) -> WinRMTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Transport Protocol -------------------------------------------------------

    def run(self, cmd: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        """Run ``cmd`` in the remote shell; ``stdin`` is sent in chunks, then closed.

        :raises ConnectFailed: refused, dropped, TLS handshake cut (retryable).
        :raises CommandTimedOut: no result within ``timeout`` (retryable).
        :raises AuthFailed: credentials rejected (fatal).
        :raises ServerCertificateRejected: the certificate is not trusted (fatal).
        :raises WinRMServerError: an HTTP error or WS-Management fault.
        :raises CallCancelled: ``cancel`` said stop while the command ran.
        """
        result, _ = self._execute(cmd, [stdin] if stdin is not None else None, timeout=timeout)
        return result

    def run_ps(self, script: str, *, timeout: float) -> CommandResult:
        """Run a PowerShell script sent on stdin (no command-line length limit).

        :raises: as ``run``.
        """
        return self.run(POWERSHELL_STDIN, timeout=timeout, stdin=script.encode("utf-8"))

    def put_stream(
        self,
        cmd: str,
        chunks: Iterable[bytes | memoryview],
        *,
        timeout: float,
        progress: ProgressCallback | None = None,
        hash_sent: bool = True,
    ) -> StreamResult:
        """Feed ``chunks`` to ``cmd``'s stdin through WS-Management Send envelopes,
        hashing them unless ``hash_sent`` is false.

        Small payloads only (profiles, scripts): WinRM moves ~0.5 MiB per envelope
        round trip, far too slow for a disk image, which goes over SSH in the
        provisioning environment instead.

        :raises: as ``run``.
        """
        digest = hashlib.sha256()
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                if hash_sent:
                    digest.update(chunk)
                sent += len(chunk)
                # A copy: the caller may reuse a memoryview's buffer once we move on.
                yield bytes(chunk)
                if progress is not None:
                    progress(sent)

        result, _ = self._execute(cmd, counted(), timeout=timeout)
        return StreamResult(
            bytes_sent=sent, sha256=digest.hexdigest() if hash_sent else "", result=result
        )

    def close(self) -> None:
        """Close the remote shell (best effort) and the HTTP session."""
        self._drop_shell()
        # The laptop may be gone already: nothing is left to keep.
        with suppress(Exception):
            self._protocol.transport.close_session()

    # -- internals ----------------------------------------------------------------------

    def _execute(
        self, cmd: str, stdin: Iterable[bytes] | None, *, timeout: float
    ) -> tuple[CommandResult, int]:
        deadline = time.monotonic() + timeout
        shell_id = self._shell()
        command_id = self._call(lambda: self._protocol.run_command(shell_id, cmd))
        try:
            if stdin is not None:
                # Hold one chunk back so that the last Send carries End="true".
                pending: bytes | None = None
                for chunk in _rechunk(stdin):
                    if pending is not None:
                        self._send(shell_id, command_id, pending, end=False, deadline=deadline)
                    pending = chunk
                self._send(shell_id, command_id, pending or b"", end=True, deadline=deadline)
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                self._check_deadline(deadline, timeout)
                self._check_cancel()
                try:
                    o, e, rc, done = self._call(
                        lambda: self._protocol.get_command_output_raw(shell_id, command_id),
                        operation_timeout_is_retry=True,
                    )
                except _StillRunning:
                    time.sleep(_RECEIVE_PAUSE)
                    continue
                out.append(o)
                err.append(e)
                if done:
                    break
        except BaseException:
            # The shell may hold a half-fed command; start afresh next time.
            self._drop_shell()
            raise
        try:
            self._call(lambda: self._protocol.cleanup_command(shell_id, command_id))
        except TransportError:
            self._drop_shell()
        result = CommandResult(
            rc=rc,
            stdout=self._scrub(b"".join(out).decode("utf-8", "replace")),
            stderr=self._scrub(b"".join(err).decode("utf-8", "replace")),
        )
        return result, rc

    def _send(
        self, shell_id: str, command_id: str, data: bytes, *, end: bool, deadline: float
    ) -> None:
        if time.monotonic() > deadline:
            raise CommandTimedOut(f"{self.label}: timed out while sending input")
        self._check_cancel()
        self._call(lambda: self._protocol.send_command_input(shell_id, command_id, data, end))

    def _check_cancel(self) -> None:
        """Ask ``cancel`` (throttled: it may cost the caller a database read)."""
        if self._cancel is None:
            return
        now = time.monotonic()
        if now - self._cancel_checked < self._cancel_poll:
            return
        self._cancel_checked = now
        if self._cancel():
            # _execute drops the shell on the way out: Windows ends what runs in it.
            raise CallCancelled(f"{self.label}: cancelled while a command was running")

    def _check_deadline(self, deadline: float, timeout: float) -> None:
        if time.monotonic() > deadline:
            raise CommandTimedOut(f"{self.label}: no result within {timeout:g} s")

    def _shell(self) -> str:
        if self._shell_id is None:
            self._shell_id = self._call(
                lambda: self._protocol.open_shell(codepage=_UTF8_CODEPAGE, noprofile=True)
            )
        return self._shell_id

    def _drop_shell(self) -> None:
        shell_id, self._shell_id = self._shell_id, None
        if shell_id is None:
            return
        # Best effort: the service itself may be what failed.
        with suppress(Exception):
            self._protocol.close_shell(shell_id)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _call(self, fn: Callable[[], T], *, operation_timeout_is_retry: bool = False) -> T:
        with self._translated(operation_timeout_is_retry):
            return fn()
        raise AssertionError("unreachable")  # pragma: no cover - for the type checker

    @contextmanager
    def _translated(self, operation_timeout_is_retry: bool) -> Iterator[None]:
        """Library exceptions → ``provisioning.errors``, without the password."""
        where = self.label
        try:
            yield
        except requests.exceptions.SSLError as e:
            if _is_verification_failure(e):
                raise ServerCertificateRejected(
                    f"{where}: server certificate not trusted ({_ssl_reason(e)})"
                ) from e
            raise ConnectFailed(f"{where}: TLS handshake failed ({_ssl_reason(e)})") from e
        except requests.exceptions.ConnectTimeout as e:
            raise ConnectFailed(f"{where}: connection timed out") from e
        except requests.exceptions.ReadTimeout as e:
            raise CommandTimedOut(f"{where}: the WinRM service did not answer in time") from e
        except requests.exceptions.ConnectionError as e:
            raise ConnectFailed(f"{where}: connection refused or dropped") from e
        except requests.exceptions.RequestException as e:
            raise ConnectFailed(f"{where}: HTTP error ({type(e).__name__})") from e
        except AuthenticationError as e:
            raise AuthFailed(f"{where}: credentials rejected") from e
        except WinRMOperationTimeoutError as e:
            if operation_timeout_is_retry:
                raise _StillRunning from e
            raise CommandTimedOut(f"{where}: WS-Management operation timed out") from e
        except WSManFaultError as e:
            if e.wsman_fault_code == _WSMAN_OPERATION_TIMEOUT:
                if operation_timeout_is_retry:
                    raise _StillRunning from e
                raise CommandTimedOut(f"{where}: WS-Management operation timed out") from e
            if e.code in (401, 403):
                raise AuthFailed(f"{where}: access denied ({e.code})") from e
            err = WinRMServerError(
                f"{where}: WS-Management fault {e.wsman_fault_code or ''} "
                f"(HTTP {e.code}): {self._scrub(_short(e.reason))}".replace("  ", " ")
            )
            err.retryable = e.code >= 500
            raise err from e
        except WinRMTransportError as e:
            if e.code == 401:
                raise AuthFailed(f"{where}: credentials rejected") from e
            err = WinRMServerError(f"{where}: HTTP {e.code} from the WinRM service")
            err.retryable = e.code >= 500 or e.code in (408, 429)
            raise err from e
        except WinRMError as e:
            # Raised by pywinrm for configuration problems (a missing auth library, a
            # bad option): fatal. Its text names the option, never the password.
            raise TransportError(f"{where}: {self._scrub(_short(str(e)))}") from e


class _StillRunning(Exception):
    """Receive came back with "operation timeout": the command is still running."""


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for i in range(0, len(chunk), _STDIN_CHUNK):
            yield chunk[i : i + _STDIN_CHUNK]


def _is_verification_failure(e: requests.exceptions.SSLError) -> bool:
    text = str(e).upper()
    return "CERTIFICATE_VERIFY_FAILED" in text or "HOSTNAME MISMATCH" in text


def _ssl_reason(e: requests.exceptions.SSLError) -> str:
    text = str(e)
    for marker in ("certificate verify failed:", "CERTIFICATE_VERIFY_FAILED"):
        i = text.find(marker)
        if i >= 0:
            return _short(text[i:].split(")")[0])
    return _short(text)


def _short(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
