"""Inventory commands. ``scan``, ``devices`` and ``deliveries`` talk to the API, so a
bench PC needs only a URL and a token; ``lifecycle`` is local."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.client import ApiClient, ApiError, ServerBusy
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json
from core.errors import InvalidInput, MasterlineError
from inventory.formats import IntakeFormat
from inventory.states import to_dot, to_mermaid

devices_app = typer.Typer(help="List and inspect devices (through the API).")
deliveries_app = typer.Typer(help="Deliveries: ship-notice import, reconciliation (API).")
lifecycle_app = typer.Typer(help="The device lifecycle table.")

# Longer than a code (64) so that a scanner's prefix and suffix reach the server, whose
# rule (inventory.codes) decides; anything longer is a misread.
MAX_SCAN_LENGTH = 128
_STYLE = {
    "received": ("green", "✔"),
    "already": ("yellow", "•"),
    "unexpected": ("bold red", "✖"),
    "quarantined": ("magenta", "⚠"),
}


AssetLabelPrinter = Callable[[ApiClient, int, str], None]
"""``(client, device id, printer URI)``: print a received laptop's asset label."""
LABEL_PRINTERS: list[AssetLabelPrinter] = []
"""Who prints labels for ``scan --print``: logistics, registered at start
(``wiring.wire``); inventory sits below it and does not import it."""


def scan(
    bench: Annotated[int, typer.Option(help="Bench id where the laptops are plugged in.")],
    slot: Annotated[int | None, typer.Option(help="Slot (default: first free).")] = None,
    damaged: Annotated[bool, typer.Option(help="Quarantine every laptop scanned.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (with --damaged).")] = None,
    print_label: Annotated[
        bool, typer.Option("--print", help="Print an asset label for each laptop received.")
    ] = False,
    printer: Annotated[
        str | None, typer.Option(envvar="MASTERLINE_PRINTER", help="tcp://host[:9100]")
    ] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Scan loop for keyboard-wedge barcode scanners: one line per scan, one result line
    per beep; a bell on anything that needs a look. Ctrl-D or 'quit' ends it."""
    if print_label and not printer:
        raise InvalidInput("--print needs --printer tcp://host:9100 (or MASTERLINE_PRINTER)")
    client = ApiClient(api_url, token)
    interactive = sys.stdin.isatty()
    if isinstance(sys.stdin, io.TextIOWrapper):
        # A scanner set to the wrong keyboard layout or code page sends bytes that are
        # not UTF-8: that line is unreadable, the loop goes on.
        sys.stdin.reconfigure(errors="replace")
    if interactive:
        console.print(f"[bold]Scanning at bench {bench}[/bold] — scan a serial or asset tag")
    scanned = 0
    with client:
        for raw in sys.stdin:
            code = raw.strip()
            if not code:
                continue
            if code.lower() in ("quit", "exit"):
                break
            scanned += 1
            _scan_one(
                client,
                code,
                bench=bench,
                slot=slot,
                damaged=damaged,
                reason=reason,
                printer=printer if print_label else None,
            )
    if interactive:
        console.print(f"{scanned} scan(s)")


def _scan_one(
    client: ApiClient,
    code: str,
    *,
    bench: int,
    slot: int | None,
    damaged: bool,
    reason: str | None,
    printer: str | None = None,
) -> None:
    if len(code) > MAX_SCAN_LENGTH or not code.isprintable() or "\ufffd" in code:
        _result("bold red", f"✖ unreadable scan ({len(code)} chars) — scan again", bell=True)
        return
    body: dict[str, Any] = {"code": code, "bench_id": bench, "damaged": damaged}
    if slot is not None:
        body["slot"] = slot
    if reason:
        body["reason"] = reason
    try:
        result = client.post("/scan", json=body)
        outcome, message = str(result["outcome"]), str(result["message"])
        attention = bool(result.get("attention", True))
    except ServerBusy as e:
        # Retried already (core.client): the loop stops rather than make every later
        # scan wait as long; the technician sees which laptop was not recorded.
        _result("bold red", f"✖ {code}: not recorded: {e.message}", bell=True)
        raise typer.Exit(e.exit_code) from None
    except MasterlineError as e:
        _result("bold red", f"✖ {code}: error: {e.message}", bell=True)
        return
    except (KeyError, TypeError):
        _result("bold red", f"✖ {code}: error: unexpected answer from the server", bell=True)
        return
    style, mark = _STYLE.get(outcome, ("red", "?"))
    _result(style, f"{mark} {message}", bell=attention)
    if printer and outcome == "received":
        try:
            for print_label in LABEL_PRINTERS:
                print_label(client, int(result["device"]["id"]), printer)
        except MasterlineError as e:
            _result("bold red", f"✖ {code}: label not printed: {e.message}", bell=True)


def _result(style: str, text: str, *, bell: bool) -> None:
    """One line per scan. The bell goes first, so it rings with the line it belongs to;
    the text is escaped because it echoes what was scanned ("[" is not markup here)."""
    if bell:
        sys.stdout.write("\a")
        sys.stdout.flush()
    console.print(f"[{style}]{escape(text)}[/{style}]", soft_wrap=True)


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
    params = {
        k: v
        for k, v in {
            "state": state,
            "client": client_code,
            "delivery_id": delivery,
            "serial_prefix": serial_prefix,
            "limit": limit,
            "cursor": cursor,
        }.items()
        if v is not None
    }
    with ApiClient(api_url, token) as client:
        page = client.get("/devices", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "serial", "vendor", "state", "client", "delivery", "bench/slot")
    for d in page["items"]:
        where = f"{d['bench_id']}/{d['slot']}" if d["bench_id"] else ""
        table.add_row(
            str(d["id"]),
            d["serial"],
            d["vendor"],
            d["state"],
            str(d["client_id"] or ""),
            str(d["delivery_id"] or ""),
            where,
        )
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
        table.add_row(
            e["at"], e["event"], e["from_state"] or "", e["to_state"], e["actor"], e["reason"] or ""
        )
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
    device_id: int,
    delivery: Annotated[int, typer.Option(help="Delivery id.")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Resolve an UNEXPECTED laptop by attaching it to a delivery."""
    with ApiClient(api_url, token) as client:
        d = client.post(f"/devices/{device_id}/attach", json={"delivery_id": delivery})
    console.print(f"{d['serial']} attached to delivery {delivery}; now {d['state']}")


# Deliveries (ship notices): create, list, import, reconcile.
@deliveries_app.command("create")
def deliveries_create(
    vendor: Annotated[str, typer.Option(help="Vendor as on the ship notice, e.g. Dell.")],
    order: Annotated[str, typer.Option(help="Order / PO reference.")],
    client_code: Annotated[
        str | None, typer.Option("--client", help="Client code (staff; implied for logistics).")
    ] = None,
    carrier: Annotated[str | None, typer.Option()] = None,
    tracking: Annotated[str | None, typer.Option()] = None,
    expected_date: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="YYYY-MM-DD.")
    ] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Announce a delivery; import its ship notice next."""
    body = {
        "client_code": client_code,
        "vendor": vendor,
        "order_reference": order,
        "carrier": carrier,
        "tracking": tracking,
        "expected_date": expected_date.date().isoformat() if expected_date else None,
    }
    with ApiClient(api_url, token) as client:
        row = client.post("/deliveries", json=body)
    if as_json:
        print_json(row)
        return
    console.print(
        f"delivery {row['id']} created ({row['vendor']} {row['order_reference']})", markup=False
    )


@deliveries_app.command("list")
def deliveries_list(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    cursor: Annotated[int | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One page of deliveries (a client-bound token sees its own company's)."""
    params = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
    with ApiClient(api_url, token) as client:
        page = client.get("/deliveries", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "client", "vendor", "order", "carrier", "tracking", "expected")
    for d in page["items"]:
        table.add_row(
            *(
                escape("" if d.get(k) is None else str(d[k]))
                for k in (
                    "id",
                    "client_id",
                    "vendor",
                    "order_reference",
                    "carrier",
                    "tracking",
                    "expected_date",
                )
            )
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@deliveries_app.command("import")
def deliveries_import(
    delivery_id: int,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    fmt: Annotated[
        IntakeFormat | None,
        typer.Option("--format", help="generic or autopilot (default: from the header)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; write nothing.")] = False,
    allow_other_vendor: Annotated[
        bool,
        typer.Option(
            "--allow-other-vendor",
            help="Accept lines without a vendor whose serial is known under another vendor.",
        ),
    ] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import a vendor ship notice (CSV or Autopilot CSV) as EXPECTED devices.

    All or nothing: on any error every error is printed as `line N, column C: message`
    and the command exits 2 with nothing written. Re-importing a file changes nothing."""
    size = file.stat().st_size
    from inventory import intake  # the server's stack: only when importing a file

    if size > intake.MAX_BYTES:
        raise InvalidInput(f"{file} is {size} bytes; the limit is {intake.MAX_BYTES} (split it)")
    params: dict[str, Any] = {"dry_run": dry_run}
    if allow_other_vendor:
        params["allow_other_vendor"] = True
    if fmt is not None:
        params["format"] = fmt.value
    # 100,000 rows take a while on a small server: wait longer than for a scan.
    with ApiClient(api_url, token, timeout=600) as client:
        try:
            summary = client.post(
                f"/deliveries/{delivery_id}/import",
                content=file.read_bytes(),
                params=params,
                headers={"Content-Type": "text/csv"},
            )
        except ApiError as e:
            errors = e.body.get("errors")
            if e.status_code != 422 or not isinstance(errors, list) or not errors:
                raise
            if not isinstance(errors[0], dict) or "line" not in errors[0]:
                raise
            if as_json:
                print_json(e.body)
            _print_intake_errors(errors, f"{file.name} rejected, nothing written")
            raise typer.Exit(2) from None
    if as_json:
        print_json(summary)
    elif summary["errors"]:
        # Rejected whole: no counts, they would say what cannot happen.
        console.print(
            f"{summary['rows']} row(s) ({summary['format']}): rejected whole, nothing "
            "would be imported — dry run, nothing written",
            markup=False,
        )
    else:
        verb = "would be" if dry_run else "were"
        counts = ", ".join(
            f"{summary[k]} {k}" for k in ("created", "updated", "unchanged", "attached")
        )
        console.print(
            f"{summary['rows']} row(s) ({summary['format']}): {counts}"
            + (" — dry run, nothing written" if dry_run else ""),
            markup=False,
        )
        if summary["new_hardware_models"]:
            console.print(
                f"new hardware models {verb} added: " + ", ".join(summary["new_hardware_models"]),
                markup=False,
            )
    if summary["errors"]:
        _print_intake_errors(summary["errors"], f"{file.name} would be rejected")
        raise typer.Exit(2)


def _print_intake_errors(errors: list[dict[str, Any]], headline: str) -> None:
    from inventory import intake

    # Plain echo, not rich: one unwrapped line per error, easy to grep and to read.
    typer.echo(f"{headline}: {len(errors)} error(s)", err=True)
    for text in intake.error_lines(errors):
        typer.echo(text, err=True)


@deliveries_app.command("reconcile")
def deliveries_reconcile(
    delivery_id: int,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one line per device.")] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Expected, received, missing, wrong-model and unexpected devices of a delivery."""
    path = f"/deliveries/{delivery_id}/reconciliation"
    with ApiClient(api_url, token) as client:
        if as_csv:
            typer.echo(client.get(path, params={"format": "csv"}), nl=False)
            return
        rec = client.get(path)
    if as_json:
        print_json(rec)
        return
    console.print(
        f"delivery {rec['delivery_id']}: {rec['expected']} expected, {rec['received']} "
        f"received, {rec['missing']} missing, {rec['wrong_model']} wrong model, "
        f"{rec['unexpected']} unexpected"
    )
    todo = [line for line in rec["lines"] if line["status"] != "received"]
    if todo:
        table = Table("serial", "vendor", "status", "state", "expected model", "observed model")
        keys = ("serial", "vendor", "status", "state", "expected_model", "observed_model")
        for line in todo:
            table.add_row(*(escape(line[k] or "") for k in keys))
        console.print(table)


@lifecycle_app.command("diagram")
def diagram(
    fmt: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the lifecycle table as a Mermaid or Graphviz diagram."""
    if fmt not in ("mermaid", "dot"):
        err_console.print("--format must be mermaid or dot")
        raise typer.Exit(2)
    typer.echo(to_mermaid() if fmt == "mermaid" else to_dot(), nl=False)
