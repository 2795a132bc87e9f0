"""How ``make run`` ends: on a signal, and on its last screen.

**Signals.** Closing the terminal (SIGHUP), a service manager or ``kill`` (SIGTERM) and
Ctrl-C (SIGINT) all stop the demo the same way: the main thread gets
``KeyboardInterrupt`` and the demo's ``finally`` stops the server, the worker and the
lab; further signals are ignored until that is done. The lab's daemon (which serves the
WinRM endpoints) and its sshds run in sessions of their own, out of reach of the
terminal's signals, so the demo starts the lab as its *owner*: if the demo dies without
stopping it (SIGKILL), the daemon notices within a second and stops the sshds and
itself. Under ``make run`` the demo also dies with its parent (``PR_SET_PDEATHSIG``), so
a signal sent to ``make`` alone does not leave it running.

**The last screen** says what happened and what to do next, in any terminal width:
every failure with its step and its whole cause (wrapped, never cut), the API's URL, the
admin token and the next commands. It is printed after the last bench table, so it is
what stays on the screen.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


def _interrupt(signum: int, _frame: Any) -> None:
    # Once: the cleanup that follows must not be interrupted by the next signal.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install_stop_signals() -> None:
    """SIGTERM, SIGHUP and SIGINT raise ``KeyboardInterrupt`` in the main thread."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While the demo stops what it started."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_with_parent() -> None:
    """Get SIGTERM when the parent process (``make``) dies; if it already has, stop."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not Linux, or refused: the signal to the process group still works
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def final_summary(rows: list[dict[str, Any]], *, base: str, token: str) -> RenderableType:
    """The last screen of ``make run``: what happened, then what to do next."""
    ready = sum(1 for r in rows if r.get("device_state") == "ready")
    failed = [r for r in rows if r.get("status") in ("failed", "aborted")]
    unfinished = [r for r in rows if r.get("status") not in ("succeeded", "failed", "aborted")]
    parts: list[RenderableType] = []
    head = Text(f"{ready} of {len(rows)} laptops READY", style="bold green" if ready else "bold")
    if failed:
        head.append(f", {len(failed)} failed", style="bold red")
    if unfinished:
        head.append(f", {len(unfinished)} not finished yet", style="bold yellow")
    parts.append(head)
    for r in failed:
        where = r.get("failed_step") or r.get("step_name") or "?"
        line = Text("  • ", style="red")
        line.append(f"{r.get('serial')} (run {r.get('id')}, slot {r.get('slot') or '-'})")
        line.append(f" failed at {where}: ")
        line.append(str(r.get("last_error") or "no error recorded"))
        parts.append(line)
    parts.append(Text(""))
    up = Text("The server keeps running at ")
    up.append(base, style="bold")
    up.append(f" (API docs: {base}/docs).")
    parts.append(up)
    parts.append(Text.assemble("Admin token: ", (token, "bold")))
    parts.append(Text(""))
    parts.append(Text("Next, in another terminal (in this folder):", style="bold"))
    for command, why in (
        (f"export MASTERLINE_TOKEN={token}", "the CLI's credentials"),
        (".venv/bin/masterline watch --all", "the bench view, finished runs too"),
        (".venv/bin/masterline runs show RUN", "one run's steps and its error"),
        (".venv/bin/masterline runs retry RUN", "retry a failed run from its step"),
        (".venv/bin/masterline --help", "everything else"),
    ):
        line = Text("  ")
        line.append(command, style="cyan")
        line.append(f"  # {why}", style="dim")
        parts.append(line)
    parts.append(Text(""))
    parts.append(Text("Ctrl-C here stops the server, the worker and the lab."))
    return Panel(Group(*parts), title="make run: done", expand=False)
