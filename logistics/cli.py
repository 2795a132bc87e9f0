"""Logistics commands.

``dispatch``, ``deliveries status``, ``labels``, ``webhooks add|list|test|replay|log`` and
``logistics status|…`` talk to the API (a logistics PC needs a URL and a token);
``webhooks send`` (the sender) and ``logistics purge`` run where the database is.
Personal data typed on the command line is sent to the API and never printed back
except by listings the caller's role may see.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from core.client import ApiClient, ApiError
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json
from core.errors import InvalidInput

app = typer.Typer(help="Dispatch, status, change feed, Autopilot export, retention purge.")
labels_app = typer.Typer(help="Asset-tag and shipping labels (ZPL to a printer, or PDF).")
webhooks_app = typer.Typer(help="Webhook subscriptions, the sender, the delivery log.")

PrinterOpt = Annotated[
    str | None,
    typer.Option("--printer", envvar="MASTERLINE_PRINTER", help="tcp://host[:9100]"),
]


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
    from logistics.service import purge_personal_data

    retention = days if days is not None else get_settings().teleworker_retention_days
    report: dict[str, int] = {}
    with get_database().session() as session:
        erased = purge_personal_data(session, retention_days=retention, report=report)
    extra = "".join(f", {n} {what}" for what, n in report.items())
    console.print(f"{erased} teleworker(s) erased{extra} (retention {retention} days)")


# Labels.
def _labels(
    kind: str,
    delivery: int | None,
    serial: str | None,
    device: int | None,
    pdf: Path | None,
    a4: bool,
    printer: str | None,
    api_url: str | None,
    token: str | None,
) -> None:
    from logistics.labels import send_raw

    if (pdf is None) == (printer is None):
        raise InvalidInput("give one of --pdf FILE or --printer tcp://host:9100")
    params: dict[str, Any] = {
        k: v
        for k, v in {
            "delivery_id": delivery,
            "serial": serial,
            "device_id": device,
        }.items()
        if v is not None
    }
    params["format"] = ("pdf-a4" if a4 else "pdf") if pdf else "zpl"
    with ApiClient(api_url, token) as client:
        response = _get_bytes(client, f"/labels/{kind}", params)
    if pdf is not None:
        pdf.write_bytes(response.content)
        console.print(f"wrote {pdf}")
        return
    assert printer is not None
    send_raw(printer, response.content)
    console.print(f"{response.content.count(b'^XA')} label(s) sent to {printer}")


@labels_app.command("asset")
def labels_asset(
    delivery: Annotated[int | None, typer.Option(help="Every laptop of a delivery.")] = None,
    serial: Annotated[str | None, typer.Option(help="One laptop.")] = None,
    device: Annotated[int | None, typer.Option(help="One laptop by id.")] = None,
    pdf: Annotated[Path | None, typer.Option(help="Write a PDF here.")] = None,
    a4: Annotated[bool, typer.Option(help="PDF as A4 sheets of 24.")] = False,
    printer: PrinterOpt = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Asset-tag labels (QR code of the asset tag)."""
    _labels("asset", delivery, serial, device, pdf, a4, printer, api_url, token)


@labels_app.command("shipping")
def labels_shipping(
    delivery: Annotated[int | None, typer.Option(help="Every dispatched laptop.")] = None,
    serial: Annotated[str | None, typer.Option(help="One laptop.")] = None,
    device: Annotated[int | None, typer.Option(help="One laptop by id.")] = None,
    pdf: Annotated[Path | None, typer.Option(help="Write a PDF here.")] = None,
    a4: Annotated[bool, typer.Option(help="PDF as A4 sheets of 24.")] = False,
    printer: PrinterOpt = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Shipping labels (address, carrier, tracking, QR code of the asset tag)."""
    _labels("shipping", delivery, serial, device, pdf, a4, printer, api_url, token)


def print_asset_label(client: ApiClient, device_id: int, printer: str) -> None:
    """For ``masterline scan --print``: fetch one asset label as ZPL and print it.

    :raises ApiError, PrinterUnavailable, BadPrinterUri:
    """
    from logistics.labels import send_raw

    response = _get_bytes(client, "/labels/asset", {"device_id": device_id})
    send_raw(printer, response.content)


# Webhooks.
@webhooks_app.command("add")
def webhooks_add(
    url: str,
    events: Annotated[
        list[str] | None, typer.Option("--event", help="device.<state> (repeat), default all.")
    ] = None,
    client_code: Annotated[str | None, typer.Option("--client", help="Admins: client.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Subscribe a URL; prints the generated signing secret once."""
    body = {
        "url": url,
        "event_types": events or ["*"],
        "client_code": client_code,
        "description": description,
    }
    with ApiClient(api_url, token) as client:
        row = client.post("/webhooks", json=body)
    if as_json:
        print_json(row)
        return
    console.print(f"subscription {row['id']} created for {', '.join(row['event_types'])}")
    console.print(f"secret (shown once): {row['secret']}")


@webhooks_app.command("list")
def webhooks_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Subscriptions you can see (secrets are never shown)."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/webhooks")
    if as_json:
        print_json(rows)
        return
    table = Table("id", "client", "url", "events", "active")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["client_id"]),
            r["url"],
            ", ".join(r["event_types"]),
            "yes" if r["active"] else "paused",
        )
    console.print(table)


@webhooks_app.command("test")
def webhooks_test(sub_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    """Send a signed test message now."""
    with ApiClient(api_url, token) as client:
        r = client.post(f"/webhooks/{sub_id}/test")
    if r["delivered"]:
        console.print(f"delivered ({r['status_code']}), webhook-id {r['message_id']}")
        return
    err_console.print(f"not delivered: {r['error'] or r['status_code']}")
    raise typer.Exit(1)


@webhooks_app.command("replay")
def webhooks_replay(
    sub_id: int,
    since_seq: Annotated[int | None, typer.Option(help="Every event after this seq.")] = None,
    delivery: Annotated[list[int] | None, typer.Option(help="Delivery ids (repeat).")] = None,
    failed: Annotated[bool, typer.Option(help="Every delivery that gave up.")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Queue events again with their original webhook-id."""
    body = {"since_seq": since_seq, "delivery_ids": delivery, "failed_only": failed}
    with ApiClient(api_url, token) as client:
        r = client.post(f"/webhooks/{sub_id}/replay", json=body)
    console.print(f"{r['requeued']} requeued, {r['created']} new")


@webhooks_app.command("log")
def webhooks_log(
    sub_id: int,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    cursor: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The delivery log of a subscription."""
    params = {
        k: v
        for k, v in {"status": status, "cursor": cursor, "limit": limit}.items()
        if v is not None
    }
    with ApiClient(api_url, token) as client:
        page = client.get(f"/webhooks/{sub_id}/deliveries", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "webhook-id", "type", "status", "attempts", "last", "next attempt")
    for d in page["items"]:
        last = str(d["last_status_code"] or d["last_error"] or "")
        table.add_row(
            str(d["id"]),
            d["message_id"],
            d["event_type"],
            d["status"],
            str(d["attempts"]),
            last,
            d["next_attempt_at"],
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@webhooks_app.command("send")
def webhooks_send(
    once: Annotated[bool, typer.Option(help="One round, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Idle poll interval, seconds.")] = 1.0,
    backoff: Annotated[float, typer.Option(help="First retry delay, seconds.")] = 5.0,
    max_attempts: Annotated[int, typer.Option(min=1)] = 12,
    lease: Annotated[float, typer.Option(help="Seconds before a claimed send is retried.")] = 60.0,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Deadline of a whole HTTP call (not per read), seconds "
            "(default: MASTERLINE_WEBHOOK_DEADLINE_SECONDS, 10)."
        ),
    ] = None,
) -> None:
    """Run the webhook sender (server side). Safe to run several; safe to kill."""
    import dataclasses
    import logging

    from core.db import get_database
    from logistics.sender import SenderPolicy, run_sender

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    policy = SenderPolicy(backoff_seconds=backoff, max_attempts=max_attempts, lease_seconds=lease)
    if timeout is not None:
        policy = dataclasses.replace(policy, timeout_seconds=timeout)
    run_sender(
        get_database(), policy=policy, interval=interval, once=once, should_stop=lambda: stop["now"]
    )
