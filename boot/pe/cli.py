"""``masterline pe``: build the preboot environment, list the catalogue, choose the
version network boot serves (run where the server runs: it writes ``<data_dir>/pe``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from boot.pe import repository, service, usb
from core.console import JsonFlag, console, print_json
from core.errors import InvalidInput

app = typer.Typer(help="The preboot environment: build, list, use, USB stick image.")


@app.command("build")
def build(
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Debian package cache (default ~/.cache/masterline/pe)."),
    ] = None,
    keep_current: Annotated[
        bool, typer.Option(help="Store it without making it the version network boot serves.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Build a kernel + initramfs from Debian packages (apt-get download, cached) and
    store them with their sha256. Same packages and sources, same bytes."""
    manifest = service.build(cache_dir=cache_dir, make_current=not keep_current)
    if as_json:
        print_json(manifest)
        return
    files = manifest["files"]
    console.print(f"PE {manifest['version']} stored ({manifest['release']})")
    for name, info in sorted(files.items()):
        console.print(f"  {name:<11} {info['size']:>11,} bytes  sha256 {info['sha256']}")


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """The stored PE versions, newest first; * marks the one network boot serves."""
    current = repository.current_version()
    rows = repository.versions()
    if as_json:
        print_json([{**m, "current": m["version"] == current} for m in rows])
        return
    # The version is what `pe use` takes: never wrapped or cut, whatever the terminal's
    # width; the hashes give way first (the whole of them is in --json).
    table = Table("")
    table.add_column("version", no_wrap=True)
    table.add_column("built at")
    table.add_column("initrd bytes", justify="right")
    table.add_column("initrd sha256", overflow="ellipsis", no_wrap=True, max_width=17)
    table.add_column("kernel sha256", overflow="ellipsis", no_wrap=True, max_width=17)
    for m in rows:
        f = m["files"]
        table.add_row(
            "*" if m["version"] == current else "",
            m["version"],
            m.get("built_at", ""),
            f"{f[repository.INITRD]['size']:,}",
            f[repository.INITRD]["sha256"][:16] + "…",
            f[repository.KERNEL]["sha256"][:16] + "…",
        )
    console.print(table)


@app.command("use")
def use(version: str) -> None:
    """Serve VERSION to network-booting laptops from now on."""
    repository.set_current(version)
    console.print(f"network boot serves PE {version}")


@app.command("usb")
def usb_image(
    output: Annotated[Path, typer.Option("--output", "-o", help="The image file to write.")],
    api_url: Annotated[str, typer.Option(help="Masterline's address as the bench reaches it.")],
    credential_file: Annotated[
        Path,
        typer.Option(
            help="A file holding the enrollment credential (create it with --no-netboot); "
            "'-' reads standard input. Never on the command line: it would be in ps."
        ),
    ],
    site: Annotated[str | None, typer.Option(help="Site code (informative).")] = None,
    bench: Annotated[str | None, typer.Option(help="Bench code (informative).")] = None,
    version: Annotated[str | None, typer.Option(help="PE version (default: current).")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Debian package cache (default ~/.cache/masterline/pe).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a bootable USB stick image (GPT, EFI system partition): shim → GRUB → the
    PE's kernel, all signed, so it boots with Secure Boot on. Write it to a stick with
    `dd if=IMAGE of=/dev/sdX bs=4M conv=fsync`."""
    try:
        raw = (
            typer.get_text_stream("stdin").read()
            if str(credential_file) == "-"
            else (credential_file.read_text())
        )
    except OSError as e:
        raise InvalidInput(f"cannot read {credential_file}: {e.strerror}") from e
    credential = raw.strip()
    if not credential:
        raise InvalidInput("the credential file is empty")
    result = usb.build_image(
        output,
        api_url=api_url,
        credential=credential,
        site=site,
        bench=bench,
        version=version,
        cache_dir=cache_dir or service.PeSettings().cache_dir,
    )
    if as_json:
        print_json(result)
        return
    console.print(f"{output}: {result['size']:,} bytes, PE {result['pe_version']} (mode 0600)")
