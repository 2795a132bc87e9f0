"""``masterline boot``: enrollment credentials, site registration settings, delivery
sites, PE boots and refused attempts, through the API (an admin or technician PC needs
a URL and a token)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json
from core.errors import InvalidInput

credentials_app = typer.Typer(help="Bench enrollment credentials (admin).")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(escape("" if row.get(c) is None else str(row[c])) for c in columns))
    console.print(table)


@credentials_app.command("create")
def credentials_create(
    site: Annotated[str, typer.Option(help="Site code.")],
    name: Annotated[str, typer.Option(help="Who or what holds it, e.g. 'B1 wave 3'.")],
    bench: Annotated[str | None, typer.Option(help="Bench code (scan-in uses it).")] = None,
    client: Annotated[str | None, typer.Option(help="Only this client's laptops.")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    netboot: Annotated[
        bool, typer.Option(help="Served in the bench's iPXE script (--no-netboot: USB only).")
    ] = True,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a credential and print it once (only its hash is kept for lookups)."""
    body = {
        "name": name,
        "site_code": site,
        "bench_code": bench,
        "client_code": client,
        "expires_in_days": expires_in_days,
        "netboot": netboot,
    }
    with ApiClient(api_url, token) as api:
        row = api.post("/boot/credentials", json=body)
    if as_json:
        print_json(row)
        return
    console.print(f"credential {row['id']} created for site {site}; store it now, shown once:")
    typer.echo(row["credential"])


@credentials_app.command("list")
def credentials_list(
    site: Annotated[str | None, typer.Option(help="Site code.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked ones too.")] = False,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Credentials (prefixes only), live ones unless --all."""
    params: dict[str, Any] = {"include_revoked": include_revoked}
    if site:
        params["site"] = site
    with ApiClient(api_url, token) as api:
        rows = api.get("/boot/credentials", params=params)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["prefix"] = r["prefix"] + "…"
    _table(
        rows,
        [
            "id",
            "name",
            "prefix",
            "site_id",
            "bench_id",
            "client_id",
            "netboot",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ],
    )


@credentials_app.command("revoke")
def credentials_revoke(
    credential_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Revoke a credential: refused from the next registration on."""
    with ApiClient(api_url, token) as api:
        api.request("DELETE", f"/boot/credentials/{credential_id}")
    console.print(f"credential {credential_id} revoked")


def site_settings(
    site: Annotated[str, typer.Argument(help="Site code.")],
    scan_in: Annotated[
        bool | None,
        typer.Option("--scan-in/--no-scan-in", help="Registration is scan-in at this site."),
    ] = None,
    worker_key: Annotated[
        str | None, typer.Option(help="Worker's private key path (its .pub is read).")
    ] = None,
    heartbeat_seconds: Annotated[int | None, typer.Option(min=2, max=600)] = None,
    silence_seconds: Annotated[int | None, typer.Option(min=5, max=3600)] = None,
    allow_address_mismatch: Annotated[
        bool | None, typer.Option("--allow-address-mismatch/--strict-address")
    ] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a site's registration settings, or change the ones given."""
    body = {
        k: v
        for k, v in {
            "registration_is_scan_in": scan_in,
            "worker_key_path": worker_key,
            "heartbeat_seconds": heartbeat_seconds,
            "silence_seconds": silence_seconds,
            "allow_address_mismatch": allow_address_mismatch,
        }.items()
        if v is not None
    }
    with ApiClient(api_url, token) as api:
        path = f"/boot/sites/{site}/settings"
        row = api.request("PATCH", path, json=body) if body else api.get(path)
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        console.print(f"{key}: {escape(str(value))}")


def delivery_site(
    delivery: Annotated[int, typer.Argument(help="Delivery id.")],
    site: Annotated[str, typer.Argument(help="Site code.")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Stage a delivery at a site: other sites' PEs are refused its laptops."""
    with ApiClient(api_url, token) as api:
        api.request("PUT", f"/boot/deliveries/{delivery}/site", json={"site_code": site})
    console.print(f"delivery {delivery} is staged at {site}")


def pes(
    site: Annotated[str | None, typer.Option(help="Site code.")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="waiting, registered, ended (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """PE boots, newest first: waiting ones show why (e.g. booted, not scanned)."""
    params: dict[str, Any] = {"limit": 500}
    if site:
        params["site"] = site
    if status:
        params["status"] = status
    with ApiClient(api_url, token) as api:
        page = api.get("/boot/pes", params=params)
    if as_json:
        print_json(page)
        return
    rows = page["items"]
    for r in rows:
        r["why"] = r["wait_reason"] or ("alive" if r["alive"] else "silent")
    _table(
        rows,
        ["id", "serial", "status", "why", "peer_address", "host_key_fingerprint", "last_seen_at"],
    )


def attempts(
    site: Annotated[str | None, typer.Option(help="Site code.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Refused and quarantined registrations, newest first (for the supervisor)."""
    params: dict[str, Any] = {"limit": 500}
    if site:
        params["site"] = site
    with ApiClient(api_url, token) as api:
        page = api.get("/boot/attempts", params=params)
    if as_json:
        print_json(page)
        return
    _table(page["items"], ["last_at", "count", "serial", "reason", "peer_address", "detail"])


def action(
    boot_id: Annotated[int, typer.Argument(help="PE boot id (masterline boot pes).")],
    what: Annotated[str, typer.Argument(help="poweroff, reboot or none.")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Ask a PE to power off or reboot at its next heartbeat."""
    if what not in ("poweroff", "reboot", "none"):
        raise InvalidInput("action must be poweroff, reboot or none")
    with ApiClient(api_url, token) as api:
        api.post(f"/boot/pes/{boot_id}/action", json={"action": what})
    console.print(f"PE boot {boot_id}: {what} at its next heartbeat")
