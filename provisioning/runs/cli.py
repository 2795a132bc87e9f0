"""Provisioning commands: ``masterline runs …`` and ``masterline watch`` talk to the API
(a bench PC needs a URL and a token). ``masterline worker`` and ``masterline up``, which
run where the server runs, are in ``pipeline/cli.py``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json

app = typer.Typer(help="Provisioning runs: start, retry, abort, list, show.")

_STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "bold red",
    "aborted": "magenta",
}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _step(run: dict[str, Any]) -> str:
    step = str(run.get("step_name") or run.get("failed_step") or "")
    # A relayed stream: its progress is what its own disk verified, from its wave.
    return f"{step} (relay {run['relay_wave']})" if run.get("relay_wave") else step


def _progress(run: dict[str, Any]) -> str:
    total = run.get("progress_total") or 0
    if not total:
        return ""
    pct = 100.0 * run["progress_bytes"] / total
    return f"{pct:5.1f}% of {human_bytes(total)}"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def runs_table(runs: list[dict[str, Any]], *, title: str | None = None) -> Table:
    """The bench view: slot, serial, state, step, progress, rate, ETA, last error."""
    table = Table(title=title, expand=False)
    for col in ("run", "slot", "serial", "state", "status", "step", "progress", "rate", "ETA"):
        table.add_column(col, no_wrap=True)
    table.add_column("last error", overflow="fold", min_width=20)
    for r in runs:
        style = _STATUS_STYLE.get(r["status"], "")
        slot = f"{r.get('bench_id') or '-'}/{r.get('slot') or '-'}"
        rate = (
            human_bytes(r["rate_bytes_per_second"]) + "/s" if r.get("rate_bytes_per_second") else ""
        )
        table.add_row(
            str(r["id"]),
            slot,
            escape(r["serial"]),
            escape(r["device_state"]),
            f"[{style}]{r['status']}[/{style}]" if style else r["status"],
            escape(_step(r)),
            _progress(r),
            rate,
            _eta(r.get("eta_seconds")),
            escape(_clip(r.get("last_error") or "", 90)),
        )
    return table


@app.command("start")
def start(
    device_id: Annotated[int, typer.Argument(help="Device id (RECEIVED).")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Queue a provisioning run for a device."""
    run = ApiClient(api_url, token).request("POST", "/runs", json={"device_id": device_id})
    _print_one(run, json_out, f"run {run['id']} queued for {run['serial']}")


@app.command("retry")
def retry(
    run_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None, json_out: JsonFlag = False
) -> None:
    """Re-queue a failed run from the step that failed."""
    run = ApiClient(api_url, token).request("POST", f"/runs/{run_id}/retry")
    _print_one(run, json_out, f"run {run_id} re-queued from {run['step_name'] or 'start'}")


@app.command("abort")
def abort(
    run_id: int,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Abort a run (a running one stops at its next safe point)."""
    body = {"reason": reason} if reason else None
    run = ApiClient(api_url, token).request("POST", f"/runs/{run_id}/abort", json=body)
    what = "abort requested" if run["abort_requested"] else run["status"]
    _print_one(run, json_out, f"run {run_id}: {what}")


@app.command("list")
def list_runs(
    active: Annotated[bool, typer.Option(help="Only queued and running runs.")] = False,
    status: Annotated[str | None, typer.Option(help="Filter by status.")] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Runs with their progress."""
    params: dict[str, Any] = {"active": active, "limit": 500}
    if status:
        params["status"] = status
    page = ApiClient(api_url, token).get("/runs", params=params)
    if json_out:
        print_json(page["items"])
        return
    console.print(runs_table(page["items"]))


@app.command("show")
def show(
    run_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None, json_out: JsonFlag = False
) -> None:
    """One run and its step log."""
    run = ApiClient(api_url, token).get(f"/runs/{run_id}")
    if json_out:
        print_json(run)
        return
    console.print(runs_table([run]))
    log = Table("seq", "step", "try", "event", "message", "at")
    for e in run["events"]:
        log.add_row(
            str(e["seq"]),
            e["step"],
            str(e["attempt"]),
            e["kind"],
            escape(e["message"]),
            str(e["at"])[:19],
        )
    console.print(log)


def _print_one(run: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        print_json(run)
    else:
        console.print(line)


def watch(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    all_runs: Annotated[bool, typer.Option("--all", help="Finished runs too.")] = False,
    once: Annotated[bool, typer.Option(help="Print one table and exit.")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Live bench view: slot, serial, state, step, progress, rate, ETA, last error."""
    client = ApiClient(api_url, token)

    def latest(active: bool) -> list[dict[str, Any]]:
        page = client.get("/runs", params={"active": active, "limit": 500})
        # The latest run per device only: a retried laptop shows once.
        by_device: dict[int, dict[str, Any]] = {}
        for r in page["items"]:
            by_device[r["device_id"]] = r
        return sorted(
            by_device.values(), key=lambda r: (r.get("bench_id") or 0, r.get("slot") or 0)
        )

    def fetch() -> RenderableType:
        stamp = time.strftime("%H:%M:%S")
        rows = latest(active=not all_runs)
        if rows or all_runs:
            return runs_table(rows, title=f"Masterline bench view — {stamp}")
        # Nothing in flight: an empty table says nothing; show how the last runs ended.
        finished = latest(active=False)
        hint = Text(
            "Nothing in flight"
            + (
                f"; the latest run of each of {len(finished)} laptop(s) above. "
                if finished
                else "; no run yet. "
            )
            + "This view refreshes when a run starts; `masterline watch --all` shows "
            "finished runs too, `masterline runs show ID` one run's steps and errors."
        )
        if not finished:
            return hint
        table = runs_table(finished, title=f"Masterline bench view — {stamp} — finished runs")
        return Group(table, hint)

    if once:
        console.print(fetch())
        return
    with Live(fetch(), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(max(0.2, interval))
                live.update(fetch())
        except KeyboardInterrupt:
            pass
