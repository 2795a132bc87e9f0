"""``masterline``: the one command-line entry point.

Server-side commands (``serve``, ``db``, ``tokens``, ``worker``, ``lab``) need the
database; bench-side commands (``scan``, ``devices``, ``deliveries``…) talk to the API.
Every domain error ends here as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from api.cli import app as tokens_app
from boot.cli import app as boot_app
from boot.hardware.cli import deliveries_doa, deliveries_hardware, devices_hardware
from core.console import err_console
from core.errors import MasterlineError
from images.cli import app as images_app
from images.cli import configs_app
from inventory.cli import admin_app, deliveries_app, devices_app, lifecycle_app, scan
from lab.cli import app as lab_app
from logistics.cli import app as logistics_app
from logistics.cli import deliveries_status, dispatch, labels_app, webhooks_app
from provisioning.cli import app as provisioning_app
from provisioning.cli import up as provisioning_up
from provisioning.cli import watch as provisioning_watch
from provisioning.cli import worker as provisioning_worker

app = typer.Typer(
    name="masterline",
    help="Masterline: laptop staging from ship notice to teleworker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (run where the server runs).")
demo_app = typer.Typer(help="Demo data and the embedded all-in-one run.")

app.command("scan")(scan)
app.add_typer(devices_app, name="devices")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(admin_app, name="admin")
app.add_typer(lifecycle_app, name="lifecycle")
app.add_typer(tokens_app, name="tokens")
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(images_app, name="images")
app.add_typer(configs_app, name="configs")
app.add_typer(lab_app, name="lab")
app.add_typer(logistics_app, name="logistics")
app.command("dispatch")(dispatch)
app.add_typer(labels_app, name="labels")
app.add_typer(webhooks_app, name="webhooks")
deliveries_app.command("status")(deliveries_status)
app.add_typer(provisioning_app, name="runs")
app.command("worker")(provisioning_worker)
app.command("up")(provisioning_up)
app.command("watch")(provisioning_watch)
app.add_typer(boot_app, name="boot")
devices_app.command("hardware")(devices_hardware)
deliveries_app.command("hardware")(deliveries_hardware)
deliveries_app.command("doa")(deliveries_doa)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Create or upgrade the schema (SQLite file by default, or MASTERLINE_DATABASE_URL)."""
    from core.db import get_database
    from core.migrate import upgrade

    db = get_database()
    upgrade(db.url, revision)
    err_console.print(
        f"database at {db.engine.url.render_as_string(hide_password=True)} is up to date"
    )


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(envvar="MASTERLINE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MASTERLINE_PORT")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the API server."""
    import uvicorn

    if workers > 1:
        uvicorn.run("api.main:app", host=host, port=port, workers=workers, log_level="info")
    else:
        from api.app import create_app

        uvicorn.run(create_app(), host=host, port=port, log_level="info")


@demo_app.command("seed")
def demo_seed() -> None:
    """Load the small demo data set (idempotent) and print an admin token."""
    from core.demo import seed

    token = seed()
    typer.echo(token)


@demo_app.command("run")
def demo_run(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """The whole main job on the embedded default: lab, API, worker, images, delivery,
    scan-in, bench view (what ``make run`` does)."""
    from core.demo import run

    run(host=host, port=port)


def main() -> None:
    try:
        app()
    except MasterlineError as e:
        err_console.print(f"[red]error:[/red] {e.message}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
