"""``masterline admin``: client companies, sites, benches, hardware models (through the API,
admin role)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json

# Admin token; listings for staff.
admin_app = typer.Typer(help="Clients, sites, benches, hardware models (admin, API).")
clients_app = typer.Typer(help="Client companies (tenants).")
sites_app = typer.Typer(help="Staging sites and their imaging bandwidth caps.")
benches_app = typer.Typer(help="Benches and their numbered slots.")
models_app = typer.Typer(help="The hardware catalogue (vendor + model).")
admin_app.add_typer(clients_app, name="clients")
admin_app.add_typer(sites_app, name="sites")
admin_app.add_typer(benches_app, name="benches")
admin_app.add_typer(models_app, name="models")


def _created(what: str, row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
    else:
        console.print(f"{what} created (id {row['id']})")


def _listing(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row[c]) for c in columns))
    console.print(table)


@clients_app.command("create")
def clients_create(
    code: Annotated[str, typer.Option(help="Short code, e.g. ACME.")],
    name: Annotated[str, typer.Option(help="Company name.")],
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a client company."""
    with ApiClient(api_url, token) as client:
        row = client.post("/clients", json={"code": code, "name": name})
    _created(f"client {row['code']}", row, as_json)


@clients_app.command("list")
def clients_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Client companies (a client-bound token sees its own only)."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/clients")
    _listing(rows, ["id", "code", "name"], as_json)


@sites_app.command("create")
def sites_create(
    code: Annotated[str, typer.Option(help="Short code, e.g. PAR.")],
    name: Annotated[str, typer.Option(help="Site name.")],
    max_streams: Annotated[int | None, typer.Option(min=1, help="Imaging streams.")] = None,
    max_bps: Annotated[int | None, typer.Option(min=1, help="Imaging bytes per second.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a staging site."""
    body: dict[str, Any] = {"code": code, "name": name, "max_bytes_per_second": max_bps}
    if max_streams is not None:
        body["max_imaging_streams"] = max_streams
    with ApiClient(api_url, token) as client:
        row = client.post("/sites", json=body)
    _created(f"site {row['code']}", row, as_json)


@sites_app.command("list")
def sites_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Staging sites."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/sites")
    _listing(rows, ["id", "code", "name", "max_imaging_streams", "max_bytes_per_second"], as_json)


@benches_app.command("create")
def benches_create(
    site: Annotated[str, typer.Option(help="Site code.")],
    code: Annotated[str, typer.Option(help="Bench code, unique within the site.")],
    slots: Annotated[int, typer.Option(min=1, max=512, help="Number of slots.")] = 16,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a bench with numbered slots 1..N."""
    with ApiClient(api_url, token) as client:
        row = client.post("/benches", json={"site_code": site, "code": code, "slots": slots})
    _created(f"bench {row['code']} ({row['slots']} slots)", row, as_json)


@benches_app.command("list")
def benches_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Benches; `masterline scan --bench` takes the id."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/benches")
    _listing(rows, ["id", "site_id", "code", "slots"], as_json)


@models_app.command("create")
def models_create(
    vendor: Annotated[str, typer.Option(help="e.g. Dell.")],
    model: Annotated[str, typer.Option(help="e.g. Latitude 5440.")],
    disk_rule: Annotated[str, typer.Option(help="'largest' or a disk name (nvme0n1).")] = (
        "largest"
    ),
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Add a hardware model to the catalogue."""
    body = {"vendor": vendor, "model": model, "disk_rule": disk_rule}
    with ApiClient(api_url, token) as client:
        row = client.post("/hardware-models", json=body)
    _created(f"model {row['vendor']} {row['model']}", row, as_json)


@models_app.command("list")
def models_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """The hardware catalogue."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/hardware-models")
    _listing(rows, ["id", "vendor", "model", "disk_rule"], as_json)
