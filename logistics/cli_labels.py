"""Label commands: asset-tag and shipping labels as ZPL to a printer or as a PDF, and the
one asset label ``masterline scan --print`` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from core.client import ApiClient
from core.console import ApiUrlOpt, TokenOpt, console
from core.errors import InvalidInput

labels_app = typer.Typer(help="Asset-tag and shipping labels (ZPL to a printer, or PDF).")


PrinterOpt = Annotated[
    str | None,
    typer.Option("--printer", envvar="MASTERLINE_PRINTER", help="tcp://host[:9100]"),
]


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
        response = client.raw("GET", f"/labels/{kind}", params=params)
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

    response = client.raw("GET", "/labels/asset", params={"device_id": device_id})
    send_raw(printer, response.content)
