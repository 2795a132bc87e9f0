"""Logistics commands.

``dispatch``, ``deliveries status`` and ``logistics status|…`` talk to the API (a
logistics PC needs a URL and a token); ``logistics purge`` runs where the database is.
Labels are in ``cli_labels.py``, webhooks in ``cli_webhooks.py``.
Personal data typed on the command line is sent to the API and never printed back
except by listings the caller's role may see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from core.client import ApiClient, ApiError
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json
from core.errors import InvalidInput

app = typer.Typer(help="Dispatch, status, change feed, Autopilot export, retention purge.")


def _get_bytes(client: ApiClient, path: str, params: dict[str, Any]) -> httpx.Response:
    """A binary GET (labels, Autopilot files): ``ApiClient.get`` decodes bodies as text.

    :raises ApiError: the server answered an error. :raises Unavailable: no server.
    """
    return client.raw("GET", path, params=params)


def _file_errors(e: ApiError) -> None:
    """Print every line/column error of a rejected file, then fail with its code."""
    for err in e.body.get("errors", []) or []:
        where = f"line {err.get('line')}" if err.get("line") is not None else "file"
        if err.get("column"):
            where += f", column {err['column']}"
        err_console.print(f"{where}: {err.get('message', '')}")
    raise e


# masterline dispatch
def dispatch(
    serial: Annotated[str | None, typer.Option(help="Serial or asset tag.")] = None,
    name: Annotated[str | None, typer.Option(help="Teleworker's name.")] = None,
    email: Annotated[str | None, typer.Option(help="Teleworker's e-mail.")] = None,
    phone: Annotated[str | None, typer.Option(help="Teleworker's phone.")] = None,
    address: Annotated[str | None, typer.Option(help="Delivery address.")] = None,
    carrier: Annotated[str | None, typer.Option()] = None,
    tracking: Annotated[str | None, typer.Option()] = None,
    vendor: Annotated[str | None, typer.Option(help="When a serial exists twice.")] = None,
    language: Annotated[str, typer.Option(help="Welcome sheet language: fr or en.")] = "fr",
    csv_file: Annotated[
        Path | None, typer.Option("--csv", exists=True, dir_okay=False, help="Bulk file.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="With --csv: check only.")] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Dispatch one READY laptop to a teleworker, or every line of a CSV (all or none)."""
    with ApiClient(api_url, token) as client:
        if csv_file is not None:
            data = csv_file.read_bytes()
            try:
                summary = client.post(
                    "/dispatch/import",
                    params={"dry_run": dry_run},
                    content=data,
                    headers={"content-type": "text/csv"},
                )
            except ApiError as e:
                _file_errors(e)
            if as_json:
                print_json(summary)
                return
            for err in summary.get("errors", []):
                err_console.print(f"line {err['line']}, column {err['column']}: {err['message']}")
            if summary["errors"]:
                console.print(
                    f"{summary['rows']} row(s); rejected whole, nothing would be dispatched; "
                    f"{len(summary['errors'])} error(s)"
                )
            else:
                verb = "would dispatch" if dry_run else "dispatched"
                count = summary["would_dispatch"] if dry_run else summary["dispatched"]
                console.print(f"{summary['rows']} row(s); {verb} {count}")
            if summary["errors"]:
                raise typer.Exit(2)
            return
        missing = [
            n
            for n, v in (
                ("--serial", serial),
                ("--name", name),
                ("--email", email),
                ("--address", address),
                ("--carrier", carrier),
                ("--tracking", tracking),
            )
            if not v
        ]
        if missing:
            raise InvalidInput(f"missing {', '.join(missing)} (or use --csv FILE)")
        body = {
            "serial": serial,
            "vendor": vendor,
            "carrier": carrier,
            "tracking": tracking,
            "teleworker": {
                "name": name,
                "email": email,
                "phone": phone,
                "address": address,
                "language": language,
            },
        }
        result = client.post("/dispatch", json=body)
    if as_json:
        print_json(result)
        return
    shipment = result.get("shipment") or {}
    console.print(
        f"{result['serial']} is {result['state']} "
        f"({shipment.get('carrier')} {shipment.get('tracking')})"
    )


# masterline deliveries status
def deliveries_status(
    delivery_id: int,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """How many of a delivery's laptops are in each state."""
    with ApiClient(api_url, token) as client:
        counts = client.get(f"/logistics/deliveries/{delivery_id}/counts")
    if as_json:
        print_json(counts)
        return
    table = Table("state", "laptops")
    for state, n in sorted(counts["counts"].items()):
        table.add_row(state, str(n))
    table.add_row("[bold]total[/bold]", f"[bold]{counts['total']}[/bold]")
    console.print(table)


# masterline logistics …
@app.command("status")
def status(
    serial: Annotated[str | None, typer.Option()] = None,
    asset_tag: Annotated[str | None, typer.Option()] = None,
    order: Annotated[str | None, typer.Option(help="Order reference.")] = None,
    delivery: Annotated[int | None, typer.Option(help="Delivery id.")] = None,
    teleworker: Annotated[int | None, typer.Option(help="Teleworker id.")] = None,
    cursor: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write CSV here.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Where laptops are (by serial, asset tag, order, delivery or teleworker)."""
    params = {
        k: v
        for k, v in {
            "serial": serial,
            "asset_tag": asset_tag,
            "order_reference": order,
            "delivery_id": delivery,
            "teleworker_id": teleworker,
            "cursor": cursor,
            "limit": limit,
        }.items()
        if v is not None
    }
    with ApiClient(api_url, token) as client:
        if csv_out is not None:
            csv_out.write_text(client.get("/logistics/status", params={**params, "format": "csv"}))
            console.print(f"wrote {csv_out}")
            return
        page = client.get("/logistics/status", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "serial", "asset tag", "state", "order", "carrier", "tracking", "to")
    for d in page["items"]:
        s = d.get("shipment") or {}
        who = (d.get("teleworker") or {}).get("name", "")
        table.add_row(
            str(d["device_id"]),
            d["serial"],
            d["asset_tag"] or "",
            d["state"],
            d["order_reference"] or "",
            s.get("carrier", ""),
            s.get("tracking", ""),
            who,
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@app.command("counts")
def counts(as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    """Laptops per state for each client you can see."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/logistics/counts")
    if as_json:
        print_json(rows)
        return
    table = Table("client", "total", "per state")
    for r in rows:
        per = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items()))
        table.add_row(r["client_code"] or "", str(r["total"]), per)
    console.print(table)


@app.command("changes")
def changes(
    cursor: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """What changed since a cursor (poll again with the printed cursor)."""
    with ApiClient(api_url, token) as client:
        page = client.get("/logistics/changes", params={"cursor": cursor, "limit": limit})
    if as_json:
        print_json(page)
        return
    table = Table("seq", "at", "serial", "event", "from", "to")
    for c in page["items"]:
        table.add_row(
            str(c["seq"]), c["at"], c["serial"], c["event"], c["from_state"] or "", c["to_state"]
        )
    console.print(table)
    console.print(f"next: --cursor {page['next_cursor']}")


def _device_action(
    path: str, body: dict[str, Any] | None, api_url: str | None, token: str | None
) -> None:
    with ApiClient(api_url, token) as client:
        d = client.post(path, json=body or {})
    console.print(f"{d['serial']} is now {d['state']}")


@app.command("deliver")
def deliver(device_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    """DISPATCHED → DELIVERED."""
    _device_action(f"/logistics/devices/{device_id}/deliver", None, api_url, token)


@app.command("return")
def return_(
    device_id: int,
    reason: Annotated[str, typer.Option(help="Why it came back.")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """DISPATCHED or DELIVERED → RETURNED."""
    _device_action(f"/logistics/devices/{device_id}/return", {"reason": reason}, api_url, token)


@app.command("restage")
def restage(
    device_id: int,
    reason: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """RETURNED → RECEIVED (staged again)."""
    _device_action(f"/logistics/devices/{device_id}/restage", {"reason": reason}, api_url, token)


@app.command("retire")
def retire(
    device_id: int,
    reason: Annotated[str, typer.Option()],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """RETURNED → RETIRED."""
    _device_action(f"/logistics/devices/{device_id}/retire", {"reason": reason}, api_url, token)


@app.command("carrier-import")
def carrier_import(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    dry_run: Annotated[bool, typer.Option()] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Apply a carrier status file (tracking,status[,date][,reason]); all or nothing."""
    with ApiClient(api_url, token) as client:
        try:
            s = client.post(
                "/logistics/carrier-status",
                params={"dry_run": dry_run},
                content=csv_file.read_bytes(),
                headers={"content-type": "text/csv"},
            )
        except ApiError as e:
            _file_errors(e)
    if as_json:
        print_json(s)
        return
    for err in s["errors"]:
        err_console.print(f"line {err['line']}, column {err['column']}: {err['message']}")
    if s["errors"]:
        console.print(f"{s['rows']} row(s): rejected whole, nothing would change (dry run)")
    else:
        console.print(
            f"{s['rows']} row(s): {s['delivered']} delivered, {s['returned']} returned, "
            f"{s['unchanged']} unchanged{' (dry run)' if dry_run else ''}"
        )
    if s["errors"]:
        raise typer.Exit(2)


@app.command("autopilot")
def autopilot_export(
    delivery_id: int,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (.csv or .zip).")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write the delivery's Windows Autopilot hardware-hash CSV (a zip above 500 rows)."""
    with ApiClient(api_url, token) as client:
        try:
            response = _get_bytes(client, f"/logistics/deliveries/{delivery_id}/autopilot", {})
        except ApiError as e:
            for err in e.body.get("errors", []) or []:
                err_console.print(f"{err.get('serial')}: {err.get('message')}")
            raise
    out.write_bytes(response.content)
    console.print(
        f"wrote {out} ({response.headers.get('x-autopilot-rows')} laptop(s) in "
        f"{response.headers.get('x-autopilot-files')} file(s))"
    )


@app.command("teleworker")
def teleworker(
    email: Annotated[str, typer.Option(help="Find by e-mail.")],
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Find a teleworker (logistics and admin)."""
    with ApiClient(api_url, token) as client:
        rows = client.post("/logistics/teleworkers/search", json={"email": email})
    if as_json:
        print_json(rows)
        return
    table = Table("id", "client", "name", "e-mail", "erased")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["client_id"]),
            r["name"],
            r["email"],
            "yes" if r["erased_at"] else "",
        )
    console.print(table)


@app.command("purge")
def purge(
    days: Annotated[
        int | None, typer.Option(help="Retention (default MASTERLINE_TELEWORKER_RETENTION_DAYS).")
    ] = None,
) -> None:
    """Erase teleworkers' personal data past the retention period (server side)."""
    from core.db import get_database
    from core.settings import get_settings
    from logistics.retention import purge_personal_data

    retention = days if days is not None else get_settings().teleworker_retention_days
    report: dict[str, int] = {}
    with get_database().session() as session:
        erased = purge_personal_data(session, retention_days=retention, report=report)
    extra = "".join(f", {n} {what}" for what, n in report.items())
    console.print(f"{erased} teleworker(s) erased{extra} (retention {retention} days)")
