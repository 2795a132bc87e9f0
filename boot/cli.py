"""``masterline boot …``: one Typer sub-app gathering the boot domain's commands."""

from __future__ import annotations

import typer

from boot.hardware.cli import policy
from boot.netboot.cli import dnsmasq_config
from boot.registration.cli import (
    action,
    attempts,
    credentials_app,
    delivery_site,
    pes,
    site_settings,
)

app = typer.Typer(help="Network boot and PE registration: credentials, sites, PE boots.")
app.add_typer(credentials_app, name="credentials")
app.command("site-settings")(site_settings)
app.command("delivery-site")(delivery_site)
app.command("policy")(policy)
app.command("pes")(pes)
app.command("attempts")(attempts)
app.command("action")(action)
app.command("dnsmasq-config")(dnsmasq_config)
