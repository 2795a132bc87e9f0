"""Inventory commands. ``scan``, ``devices`` and ``deliveries`` talk to the API, so a
bench PC needs only a URL and a token; ``lifecycle`` is local."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json
from core.errors import MasterlineError
from inventory.states import to_dot, to_mermaid

devices_app = typer.Typer(help="List and inspect devices (through the API).")
deliveries_app = typer.Typer(help="Deliveries: ship-notice import, reconciliation (API).")
admin_app = typer.Typer(help="Clients, sites, benches, hardware models (admin, API).")
lifecycle_app = typer.Typer(help="The device lifecycle table.")

MAX_SCAN_LENGTH = 64
_STYLE = {
    "received": ("green", "✔"),
    "already": ("yellow", "•"),
    "unexpected": ("bold red", "✖"),
    "quarantined": ("magenta", "⚠"),
}


def scan(
    bench: Annotated[int, typer.Option(help="Bench id where the laptops are plugged in.")],
    slot: Annotated[int | None, typer.Option(help="Slot (default: first free).")] = None,
    damaged: Annotated[bool, typer.Option(help="Quarantine every laptop scanned.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (with --damaged).")] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Scan loop for keyboard-wedge barcode scanners: one line per scan, one result line
    per beep; a bell on anything that needs a look. Ctrl-D or 'quit' ends it."""
    client = ApiClient(api_url, token)
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"[bold]Scanning at bench {bench}[/bold] — scan a serial or asset tag")
    scanned = 0
    for raw in sys.stdin:
        code = raw.strip()
        if not code:
            continue
        if code.lower() in ("quit", "exit"):
            break
        scanned += 1
        _scan_one(client, code, bench=bench, slot=slot, damaged=damaged, reason=reason)
    client.close()
    if interactive:
        console.print(f"{scanned} scan(s)")


def _scan_one(
    client: ApiClient, code: str, *, bench: int, slot: int | None, damaged: bool,
    reason: str | None,
) -> None:  # fmt: skip
    if len(code) > MAX_SCAN_LENGTH or not code.isprintable():
        _attention(f"✖ unreadable scan ({len(code)} chars) — scan again")
        return
    body: dict[str, Any] = {"code": code, "bench_id": bench, "damaged": damaged}
    if slot is not None:
        body["slot"] = slot
    if reason:
        body["reason"] = reason
    try:
        result = client.post("/scan", json=body)
    except MasterlineError as e:
        _attention(f"✖ {code}: {e.message}")
        return
    style, mark = _STYLE.get(result["outcome"], ("red", "?"))
    line = f"[{style}]{mark} {result['message']}[/{style}]"
    console.print(line)
    if result.get("attention"):
        _bell()


def _attention(text: str) -> None:
    console.print(f"[bold red]{text}[/bold red]")
    _bell()


def _bell() -> None:
    sys.stdout.write("\a")
    sys.stdout.flush()


@devices_app.command("list")
def devices_list(
    state: Annotated[str | None, typer.Option(help="Filter by state.")] = None,
    client_code: Annotated[str | None, typer.Option("--client", help="Client code.")] = None,
    delivery: Annotated[int | None, typer.Option(help="Delivery id.")] = None,
    serial_prefix: Annotated[str | None, typer.Option(help="Serial prefix.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    cursor: Annotated[int | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One page of devices."""
    params = {k: v for k, v in {
        "state": state, "client": client_code, "delivery_id": delivery,
        "serial_prefix": serial_prefix, "limit": limit, "cursor": cursor,
    }.items() if v is not None}  # fmt: skip
    with ApiClient(api_url, token) as client:
        page = client.get("/devices", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "serial", "vendor", "state", "client", "delivery", "bench/slot")
    for d in page["items"]:
        where = f"{d['bench_id']}/{d['slot']}" if d["bench_id"] else ""
        table.add_row(
            str(d["id"]), d["serial"], d["vendor"], d["state"], str(d["client_id"] or ""),
            str(d["delivery_id"] or ""), where,
        )  # fmt: skip
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@devices_app.command("show")
def devices_show(
    device_id: int, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """A device and its full history."""
    with ApiClient(api_url, token) as client:
        d = client.get(f"/devices/{device_id}")
    if as_json:
        print_json(d)
        return
    console.print(f"[bold]{d['serial']}[/bold] ({d['vendor']}) — {d['state']}")
    console.print(f"allowed: {', '.join(d['allowed_events']) or 'none'}")
    table = Table("at", "event", "from", "to", "actor", "reason")
    for e in d["history"]:
        table.add_row(e["at"], e["event"], e["from_state"] or "", e["to_state"], e["actor"],
                      e["reason"] or "")  # fmt: skip
    console.print(table)


@devices_app.command("event")
def devices_event(
    device_id: int,
    event: Annotated[str, typer.Argument(help="quarantine, release, retire, reject, …")],
    reason: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Apply a manual lifecycle action."""
    with ApiClient(api_url, token) as client:
        d = client.post(f"/devices/{device_id}/events", json={"event": event, "reason": reason})
    console.print(f"{d['serial']} is now {d['state']}")


@devices_app.command("attach")
def devices_attach(
    device_id: int, delivery: Annotated[int, typer.Option(help="Delivery id.")],
    api_url: ApiUrlOpt = None, token: TokenOpt = None,
) -> None:  # fmt: skip
    """Resolve an UNEXPECTED laptop by attaching it to a delivery."""
    with ApiClient(api_url, token) as client:
        d = client.post(f"/devices/{device_id}/attach", json={"delivery_id": delivery})
    console.print(f"{d['serial']} attached to delivery {delivery}; now {d['state']}")


@lifecycle_app.command("diagram")
def diagram(
    fmt: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the lifecycle table as a Mermaid or Graphviz diagram."""
    if fmt not in ("mermaid", "dot"):
        err_console.print("--format must be mermaid or dot")
        raise typer.Exit(2)
    typer.echo(to_mermaid() if fmt == "mermaid" else to_dot(), nl=False)
