"""``masterline forecast …``: the forecast through the API (a manager's laptop needs a
URL and a token), one line per answer unless ``--json``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json

app = typer.Typer(
    help="Wave planning: when every laptop will be ready and dispatched, what-if, capacity."
)


def _when(text: str | None) -> str:
    if not text:
        return "past 60 days"
    return datetime.fromisoformat(text).astimezone().strftime("%a %d %b %H:%M")


def _row(table: Table, name: str, f: dict[str, Any]) -> None:
    table.add_row(
        name,
        f"{f['ready_or_gone']}/{f['laptops']}",
        _when(f["ready_p50"]),
        _when(f["ready_p90"]),
        _when(f["dispatched_p50"]),
        _when(f["dispatched_p90"]),
        f"{f['throughput_per_hour']:.1f}",
    )


def _table(title: str) -> Table:
    table = Table(title=title)
    for col in ("scope", "ready", "ready P50", "ready P90", "dispatched P50", "dispatched P90"):
        table.add_column(col, no_wrap=True)
    table.add_column("per hour", justify="right")
    return table


@app.command("show")
def show(api_url: ApiUrlOpt = None, token: TokenOpt = None, json_out: JsonFlag = False) -> None:
    """The latest forecast: the wave, each site, client and delivery, the bottleneck."""
    data = ApiClient(api_url, token).request("GET", "/forecast")
    if json_out:
        print_json(data)
        return
    if data["made_at"] is None:
        console.print("no forecast yet: `masterline forecast refresh` makes one")
        return
    table = _table(f"forecast made {_when(data['made_at'])}")
    if data["wave"]:
        _row(table, "the wave", data["wave"])
    for scope in ("sites", "clients", "deliveries"):
        for f in data[scope]:
            _row(
                table,
                f"{scope[:-1] if scope != 'deliveries' else 'delivery'} {f['name'] or f['id']}",
                f,
            )
    console.print(table)
    for f in [data["wave"], *data["sites"]]:
        neck = (f or {}).get("bottleneck")
        if neck:
            console.print(f"{f['name'] or 'the wave'}: held back by {neck['label']}")
    for line in data.get("assumptions", []):
        console.print(f"assumed: {line}")


@app.command("refresh")
def refresh(api_url: ApiUrlOpt = None, token: TokenOpt = None, json_out: JsonFlag = False) -> None:
    """Compute the forecast now (staff)."""
    data = ApiClient(api_url, token).request("POST", "/forecast/refresh")
    if json_out:
        print_json(data)
        return
    wave = data["wave"] or {}
    console.print(
        f"forecast made: all ready P50 {_when(wave.get('ready_p50'))}, "
        f"P90 {_when(wave.get('ready_p90'))}"
    )


@app.command("commit")
def commit(
    delivery_id: int,
    committed: Annotated[
        str,
        typer.Argument(
            help="YYYY-MM-DD: every laptop dispatched by the end of that day; 'none' clears it."
        ),
    ],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """Set the date promised to the client for a delivery."""
    body = {"committed_date": None if committed == "none" else committed}
    data = ApiClient(api_url, token).request(
        "PUT", f"/forecast/deliveries/{delivery_id}/commitment", json=body
    )
    if json_out:
        print_json(data)
        return
    console.print(f"delivery {delivery_id}: committed {data['committed_date'] or 'none'}")


@app.command("what-if")
def what_if(
    site: Annotated[int | None, typer.Option(help="The site to change.")] = None,
    slots: Annotated[int | None, typer.Option(help="Bench slots at that site.")] = None,
    streams: Annotated[int | None, typer.Option(help="Its stream limit (live runs).")] = None,
    workers: Annotated[int | None, typer.Option(help="Workers serving it.")] = None,
    bandwidth: Annotated[int | None, typer.Option(help="Its cap, bytes per second.")] = None,
    close_at: Annotated[str | None, typer.Option(help="Closing time, HH:MM.")] = None,
    saturday: Annotated[bool | None, typer.Option(help="Open on Saturdays.")] = None,
    second_site_slots: Annotated[
        int | None,
        typer.Option(
            help="A second site with this many slots takes half the laptops not delivered yet."
        ),
    ] = None,
    on_time: Annotated[bool, typer.Option(help="Every delivery on its expected date.")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """New dates if something changed (staff)."""
    change: dict[str, Any] = {}
    for key, value in (
        ("slots", slots),
        ("stream_limit", streams),
        ("workers", workers),
        ("bandwidth_bps", bandwidth),
        ("close_at", close_at),
        ("saturday", saturday),
    ):
        if value is not None:
            change[key] = value
    body: dict[str, Any] = {"deliveries_on_time": on_time, "sites": []}
    if change:
        if site is None:
            raise typer.BadParameter("--site is needed to change a site")
        body["sites"] = [{"site_id": site, **change}]
    if second_site_slots is not None:
        body["second_site"] = {"slots": second_site_slots}
    data = ApiClient(api_url, token).request("POST", "/forecast/what-if", json=body)
    if json_out:
        print_json(data)
        return
    for item in [data["wave"], *data["sites"]]:
        b, a = item["before"], item["after"]
        console.print(
            f"{item['name'] or 'the wave'}: all dispatched P90 {_when(b['dispatched_p90'])}"
            f" -> {_when(a['dispatched_p90'])} (ready P50 {_when(b['ready_p50'])} -> "
            f"{_when(a['ready_p50'])})"
        )


@app.command("capacity")
def capacity(
    laptops: int,
    image_gb: float,
    days: int,
    os_family: Annotated[str, typer.Option("--os")] = "windows",
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonFlag = False,
) -> None:
    """How many slots, live runs, how much bandwidth and how many workers N laptops of an
    image need in D days, and why."""
    body = {"laptops": laptops, "image_gb": image_gb, "days": days, "os_family": os_family}
    data = ApiClient(api_url, token).request("POST", "/forecast/capacity", json=body)
    if json_out:
        print_json(data)
        return
    console.print(
        f"{laptops} laptops of {image_gb:g} GB in {days} day(s): {data['slots']} slots, "
        f"{data['live_runs']} live runs, {data['bandwidth_bytes_per_second'] / 1e6:.0f} MB/s, "
        f"{data['workers']} worker(s)"
    )
    for line in data["arithmetic"]:
        console.print(f"  because {line}")
    for line in data["assumptions"]:
        console.print(f"  assuming {line}")
    check = data["check"]
    if check:
        console.print(
            f"  simulated: all dispatched P50 {_when(check['dispatched_p50'])}, "
            f"P90 {_when(check['dispatched_p90'])}"
        )
