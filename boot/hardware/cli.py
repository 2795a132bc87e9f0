"""Hardware commands: a device's inventory, a delivery's exports, a site's policy
(through the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json

OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the CSV to this file.")
]


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024**3:.1f} GiB"


def devices_hardware(
    device_id: int, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """What the laptop's PE reported, with the site policy's verdict."""
    with ApiClient(api_url, token) as api:
        hw = api.get(f"/devices/{device_id}/hardware")
    if as_json:
        print_json(hw)
        return
    r = hw["latest"]
    if r is None:
        console.print(f"{escape(hw['serial'])}: no PE has registered yet")
        return
    inv = r["inventory"]
    verdict = "[green]pass[/green]" if r["verdict"] == "pass" else "[bold red]FAIL[/bold red]"
    console.print(f"[bold]{escape(hw['serial'])}[/bold] — {verdict} ({r['collected_at']})")
    for f in r["findings"]:
        console.print(f"  [red]✖[/red] {escape(f['message'])}")
    console.print(
        f"CPU {escape(str(r['cpu_model']))} ({r['cpu_cores']} cores, {r['cpu_threads']} "
        f"threads), RAM {_gib(r['ram_bytes'])}"
    )
    fw = inv.get("firmware", {})
    console.print(
        f"firmware {escape(str(r['firmware_vendor']))} {escape(str(r['firmware_version']))} "
        f"({escape(str(r['firmware_date']))}), {r['boot_mode']}, Secure Boot "
        f"{ {True: 'on', False: 'off'}.get(fw.get('secure_boot'), 'unknown') }, "
        f"TPM {r['tpm_version'] or 'none'}"
    )
    disks = Table("disk", "model", "size", "health", "wear", "note")
    for d in inv.get("disks", []):
        disks.add_row(
            d["name"],
            escape(str(d.get("model") or "")),
            _gib(d.get("size_bytes")),
            d.get("health", "unknown"),
            "" if d.get("wear_pct") is None else f"{d['wear_pct']}%",
            escape(str(d.get("note") or "")),
        )
    console.print(disks)
    for b in inv.get("batteries", []):
        console.print(
            f"battery {b['name']}: {b.get('health_pct') or '?'}% of design, "
            f"{b.get('cycles') if b.get('cycles') is not None else '?'} cycles"
        )
    if hw["history"]:
        console.print(f"{len(hw['history'])} earlier report(s): --json to see them")


def _csv_or_json(path: str, output: Path | None, as_json: bool, api_url: Any, token: Any) -> Any:
    with ApiClient(api_url, token) as api:
        if as_json:
            return api.get(path)
        text = api.raw("GET", path, params={"format": "csv"}).text
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"written to {output}")
    else:
        typer.echo(text, nl=False)
    return None


def deliveries_hardware(
    delivery_id: int,
    output: OutputOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The delivery's hardware inventory, one CSV line per laptop."""
    data = _csv_or_json(f"/deliveries/{delivery_id}/hardware", output, as_json, api_url, token)
    if as_json:
        print_json(data)


def deliveries_doa(
    delivery_id: int,
    output: OutputOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Dead-on-arrival laptops of the delivery (failing the site's health policy), CSV."""
    data = _csv_or_json(
        f"/deliveries/{delivery_id}/dead-on-arrival", output, as_json, api_url, token
    )
    if as_json:
        print_json(data)


def policy(
    site: Annotated[str, typer.Argument(help="Site code.")],
    min_battery_health: Annotated[int | None, typer.Option(min=1, max=100, help="%")] = None,
    max_battery_cycles: Annotated[int | None, typer.Option(min=1)] = None,
    failing_disk: Annotated[
        bool | None, typer.Option("--failing-disk/--ignore-failing-disk")
    ] = None,
    max_disk_wear: Annotated[int | None, typer.Option(min=1, max=255, help="%")] = None,
    require_tpm2: Annotated[str | None, typer.Option(help="never, windows or always.")] = None,
    secure_boot: Annotated[
        bool | None, typer.Option("--secure-boot/--no-secure-boot", help="Require it.")
    ] = None,
    min_ram_gib: Annotated[int | None, typer.Option(min=1)] = None,
    min_disk_gib: Annotated[int | None, typer.Option(min=1)] = None,
    clear: Annotated[
        list[str] | None, typer.Option(help="Stop checking this threshold (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a site's health policy, or change the given fields (the rest are kept)."""
    changes = {
        k: v
        for k, v in {
            "min_battery_health_pct": min_battery_health,
            "max_battery_cycles": max_battery_cycles,
            "fail_on_failing_disk": failing_disk,
            "max_disk_wear_pct": max_disk_wear,
            "require_tpm2": require_tpm2,
            "require_secure_boot": secure_boot,
            "min_ram_gib": min_ram_gib,
            "min_disk_gib": min_disk_gib,
        }.items()
        if v is not None
    }
    path = f"/boot/sites/{site}/policy"
    with ApiClient(api_url, token) as api:
        current = api.get(path)
        if changes or clear:
            body = {
                k: v
                for k, v in current.items()
                if k not in ("site_code", "updated_by", "updated_at")
            }
            body.update(changes)
            for name in clear or []:
                body[name] = None
            current = api.request("PUT", path, json=body)
    if as_json:
        print_json(current)
        return
    for key, value in current.items():
        console.print(f"{key}: {escape(str(value))}")
