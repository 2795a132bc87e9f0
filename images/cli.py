"""``masterline images`` and ``masterline configs``: through the API (a DSI workstation
needs only a URL and a token), except ``images gc`` which runs where the server runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json
from core.errors import InvalidInput
from images.models import ImageFormat, OsFamily
from images.transfer import Uploader, UploadRequest, digest_file

app = typer.Typer(help="Master images: upload (resumable), list, retire, gc.")
configs_app = typer.Typer(help="Client configurations (hostname, VPN, apps, checks).")

ClientOpt = Annotated[
    str | None, typer.Option("--client", help="Client code (admins; implied for a dsi token).")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )


def _model_ref(text: str) -> dict[str, str]:
    vendor, sep, model = text.partition(":")
    if not sep or not vendor.strip() or not model.strip():
        raise InvalidInput(f"--compatible {text!r}: write VENDOR:MODEL, e.g. 'Dell:Latitude 5440'")
    return {"vendor": vendor.strip(), "model": model.strip()}


@app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str, typer.Option(help="Image name, e.g. win11-corporate.")],
    version: Annotated[str, typer.Option(help="Version (immutable once published).")],
    os_family: Annotated[OsFamily, typer.Option("--os", help="OS family.")] = OsFamily.WINDOWS,
    fmt: Annotated[ImageFormat, typer.Option("--format", help="File format.")] = ImageFormat.RAW,
    compatible: Annotated[
        list[str] | None,
        typer.Option(help="VENDOR:MODEL it is for (repeat); none: every model."),
    ] = None,
    notes: Annotated[str | None, typer.Option(help="Release notes.")] = None,
    client_code: ClientOpt = None,
    retries: Annotated[int, typer.Option(min=0, max=100, help="Resume attempts.")] = 5,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Hash FILE, declare it, and upload it resumably (tus). Interrupted (Ctrl-C, network
    cut)? Run the same command again: it resumes from the server's offset."""
    refs = [_model_ref(c) for c in compatible or []]
    with ApiClient(api_url, token) as client:
        with _progress() as bar:
            task = bar.add_task("hashing", total=file.stat().st_size)
            digest = digest_file(file, fmt, lambda n: bar.advance(task, n))
        req = UploadRequest(file, name, version, os_family.value, fmt, refs, notes, client_code)
        with _progress() as bar:
            sending: dict[str, TaskID] = {}

            def start(offset: int, size: int) -> None:
                if "task" not in sending:
                    label = "uploading" if offset == 0 else f"resuming at {offset:,} B"
                    sending["task"] = bar.add_task(label, total=size, completed=offset)
                else:
                    bar.update(sending["task"], completed=offset, description="resuming")

            uploader = Uploader(
                client,
                retries=retries,
                on_send_start=start,
                on_send=lambda n: bar.advance(sending["task"], n),
            )
            try:
                outcome = uploader.upload(req, digest)
            except KeyboardInterrupt:
                err_console.print("interrupted; run the same command again to resume")
                raise typer.Exit(130) from None
    image = outcome.image
    if as_json:
        print_json(image)
        return
    if outcome.already:
        console.print(
            f"image {image['id']} {image['name']} {image['version']} was already "
            f"uploaded ({image['status']})"
        )
        return
    resumed = f", resumed at byte {outcome.resumed_from:,}" if outcome.resumed_from else ""
    console.print(
        f"[green]✔[/green] image {image['id']} {image['name']} {image['version']} "
        f"{image['status']} (sha256 {image['sha256'][:12]}…{resumed})"
    )


@app.command("list")
def list_images(
    client_code: ClientOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="uploading, available, retired…")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    cursor: Annotated[int | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One page of the catalogue."""
    given = {
        "client": client_code,
        "name": name,
        "status": status,
        "limit": limit,
        "cursor": cursor,
    }
    params = {k: v for k, v in given.items() if v is not None}
    with ApiClient(api_url, token) as client:
        page = client.get("/images", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "client", "name", "version", "os", "format", "size", "status", "published")
    for i in page["items"]:
        table.add_row(
            str(i["id"]),
            i["client_code"],
            i["name"],
            i["version"],
            i["os_family"],
            i["format"],
            f"{i['size']:,}",
            i["status"],
            (i["published_at"] or "")[:19],
        )
    console.print(table)
    if page.get("next_cursor"):
        console.print(f"more: --cursor {page['next_cursor']}")


def _show(image: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(image)
        return
    models = ", ".join(f"{m['vendor']} {m['model']}" for m in image["compatible_models"])
    for key, value in [
        ("id", image["id"]),
        ("client", image["client_code"]),
        ("name", image["name"]),
        ("version", image["version"]),
        ("os", image["os_family"]),
        ("format", image["format"]),
        ("status", image["status"]),
        ("size", f"{image['size']:,}"),
        ("sha256", image["sha256"]),
        ("raw size", f"{image['raw_size']:,}"),
        ("raw sha256", image["raw_sha256"]),
        ("models", models or "all"),
        ("uploaded by", image["uploaded_by"]),
        ("published", image["published_at"] or "-"),
        ("retired", image["retired_at"] or "-"),
        ("notes", image["notes"] or ""),
    ]:
        console.print(f"[bold]{key:>11}[/bold]  {value}")


@app.command("show")
def show(
    image_id: int, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """One image."""
    with ApiClient(api_url, token) as client:
        _show(client.get(f"/images/{image_id}"), as_json)


@app.command("retire")
def retire(
    image_id: int, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Retire a version: no new run uses it; `images gc` reclaims it once unused."""
    with ApiClient(api_url, token) as client:
        image = client.post(f"/images/{image_id}/retire")
    if as_json:
        print_json(image)
    else:
        console.print(f"image {image_id} {image['name']} {image['version']} retired")


@app.command("cancel")
def cancel(image_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a declared image whose upload has not finished."""
    with ApiClient(api_url, token) as client:
        client.request("DELETE", f"/images/{image_id}")
    console.print(f"image {image_id} cancelled")


@app.command("gc")
def gc(as_json: JsonFlag = False) -> None:
    """Reclaim storage of retired versions no run needs, discard abandoned uploads and
    unreferenced files (server side: needs the database and the image store)."""
    from core.db import get_database
    from images.gc import run_gc

    report = run_gc(get_database())
    if as_json:
        print_json(report.model_dump())
        return
    console.print(
        f"reclaimed {len(report.reclaimed_images)} retired image(s), "
        f"{report.files_removed} file(s), {report.reclaimed_bytes:,} bytes; kept "
        f"{len(report.kept_images)} still needed; discarded {len(report.discarded_uploads)} "
        f"abandoned upload(s), {report.temp_files_removed} stale partial file(s)"
    )


# Configurations.
def _client_code(client: ApiClient, given: str | None) -> str:
    if given:
        return given
    clients = client.get("/clients")
    if len(clients) == 1:
        return str(clients[0]["code"])
    raise InvalidInput("--client is required (this token sees several clients)")


def _print_config(cfg: dict[str, Any] | None, as_json: bool) -> None:
    if as_json:
        print_json(cfg)
        return
    if cfg is None:
        console.print("no configuration set yet")
        return
    console.print(
        f"[bold]{cfg['client_code']} v{cfg['version']}[/bold]"
        f"{' (active)' if cfg['active'] else ''} by {cfg['created_by']} "
        f"at {cfg['created_at'][:19]}"
    )
    shown = {k: cfg[k] for k in ("hostname_pattern", "image", "vpn", "apps", "checks")}
    console.print_json(json.dumps(shown))


@configs_app.command("set")
def configs_set(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Config JSON.")],
    client_code: ClientOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Store FILE as the client's next configuration version and activate it. See
    docs/images.md for the JSON shape; vpn.secrets are write-only."""
    try:
        body = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInput(f"{file.name}: not valid JSON ({type(e).__name__})") from e
    with ApiClient(api_url, token) as client:
        code = _client_code(client, client_code)
        cfg = client.post(f"/clients/{code}/configs", json=body)
    if as_json:
        print_json(cfg)
    else:
        console.print(f"[green]✔[/green] {code} configuration v{cfg['version']} is active")


@configs_app.command("show")
def configs_show(
    version: Annotated[int | None, typer.Option(help="Version (default: the active one).")] = None,
    client_code: ClientOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One configuration version (secrets by name only)."""
    with ApiClient(api_url, token) as client:
        code = _client_code(client, client_code)
        path = f"/clients/{code}/configs/{'active' if version is None else version}"
        _print_config(client.get(path), as_json)


@configs_app.command("list")
def configs_list(
    client_code: ClientOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every version of a client's configuration, newest first."""
    with ApiClient(api_url, token) as client:
        code = _client_code(client, client_code)
        rows = client.get(f"/clients/{code}/configs")
    if as_json:
        print_json(rows)
        return
    table = Table("version", "active", "hostname", "vpn", "apps", "by", "at")
    for c in rows:
        table.add_row(
            str(c["version"]),
            "✔" if c["active"] else "",
            c["hostname_pattern"],
            (c["vpn"] or {}).get("kind", "-"),
            str(len(c["apps"])),
            c["created_by"],
            c["created_at"][:19],
        )
    console.print(table)


@configs_app.command("activate")
def configs_activate(
    version: int, client_code: ClientOpt = None, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Make VERSION the active configuration (roll back or forward)."""
    with ApiClient(api_url, token) as client:
        code = _client_code(client, client_code)
        client.post(f"/clients/{code}/configs/{version}/activate")
    console.print(f"{code} configuration v{version} is active")


@configs_app.command("import-secrets")
def configs_import_secrets(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help='JSON: {"secrets": [{"serial", "name", "value"}]}'
        ),
    ],
    client_code: ClientOpt = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Import per-device secrets (write-only), all or nothing."""
    try:
        body = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidInput(f"{file.name}: not valid JSON ({type(e).__name__})") from e
    with ApiClient(api_url, token) as client:
        code = _client_code(client, client_code)
        done = client.request("PUT", f"/clients/{code}/device-secrets", json=body)
    console.print(f"imported {done['imported']} secret(s) for {code}")


@configs_app.command("keygen")
def configs_keygen() -> None:
    """Print a new key for MASTERLINE_SECRET_KEY (encrypts secrets at rest)."""
    from core.vault import new_key

    typer.echo(new_key())
