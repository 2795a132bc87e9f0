"""``masterline``: the one command-line entry point.

Server-side commands (``serve``, ``db``, ``tokens``, ``worker``, ``lab``) need the
database; bench-side commands (``scan``, ``devices``, ``deliveries``…) talk to the API.
Every domain error ends here as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer import _click as click  # typer vendors click; the PyPI one is another copy
from typer.core import TyperCommand, TyperGroup

from core.errors import MasterlineError


@dataclass(frozen=True)
class Lazy:
    """A command or sub-app imported only when it runs (or its own help is asked for).

    ``target`` is ``module:attribute`` (a Typer app or a command function); ``extra``
    are ``(command name, module:function)`` commands added to that sub-app.
    """

    target: str
    help: str
    extra: tuple[tuple[str, str], ...] = ()
    wired: bool = False
    """A server-side command: the domains' hooks are registered (``wiring.wire``) before
    it runs (the image gc asks provisioning which images runs still need...)."""


LAZY: dict[str, Lazy] = {
    "scan": Lazy(
        "inventory.cli:scan",
        "Scan loop for keyboard-wedge barcode scanners: one line per scan, one result line",
    ),
    "devices": Lazy(
        "inventory.cli:devices_app",
        "List and inspect devices (through the API).",
        extra=(("hardware", "boot.hardware.cli:devices_hardware"),),
    ),
    "deliveries": Lazy(
        "inventory.cli:deliveries_app",
        "Deliveries: ship-notice import, reconciliation (API).",
        extra=(
            ("status", "logistics.cli:deliveries_status"),
            ("hardware", "boot.hardware.cli:deliveries_hardware"),
            ("doa", "boot.hardware.cli:deliveries_doa"),
        ),
    ),
    "admin": Lazy(
        "inventory.cli_admin:admin_app", "Clients, sites, benches, hardware models (admin, API)."
    ),
    "lifecycle": Lazy("inventory.cli:lifecycle_app", "The device lifecycle table."),
    "tokens": Lazy(
        "api.cli:app", "Create, list and revoke API tokens (run where the server runs)."
    ),
    "images": Lazy(
        "images.cli:app", "Master images: upload (resumable), list, retire, gc.", wired=True
    ),
    "configs": Lazy(
        "images.cli:configs_app", "Client configurations (hostname, VPN, apps, checks)."
    ),
    "lab": Lazy("lab.cli:app", "The device lab: lab laptops for tests and rehearsal."),
    "logistics": Lazy(
        "logistics.cli:app",
        "Dispatch, status, change feed, Autopilot export, retention purge.",
        # The purge runs the help desk's purge step, registered by wire().
        wired=True,
    ),
    "dispatch": Lazy(
        "logistics.cli:dispatch",
        "Dispatch one READY laptop to a teleworker, or every line of a CSV (all or none).",
    ),
    "labels": Lazy(
        "logistics.cli_labels:labels_app",
        "Asset-tag and shipping labels (ZPL to a printer, or PDF).",
    ),
    "webhooks": Lazy(
        "logistics.cli_webhooks:webhooks_app",
        "Webhook subscriptions, the sender, the delivery log.",
    ),
    "runs": Lazy(
        "provisioning.runs.cli:app", "Provisioning runs: start, retry, abort, list, show."
    ),
    "worker": Lazy(
        "provisioning.pipeline.cli:worker",
        "Run provisioning jobs (where the server runs; SQLite or PostgreSQL).",
        wired=True,
    ),
    "up": Lazy(
        "cli:up", "Run the API and a worker in one process (the embedded default).", wired=True
    ),
    "forecast": Lazy(
        "forecast.cli:app",
        "Wave planning: when every laptop will be ready and dispatched, what-if, capacity.",
    ),
    "watch": Lazy(
        "provisioning.runs.cli:watch",
        "Live bench view: slot, serial, state, step, progress, rate, ETA, last error.",
    ),
    "helpdesk": Lazy(
        "helpdesk.cli:app",
        "Help desk: look-up, phone routing, articles, sheets, contacts, surveys.",
    ),
    "pe": Lazy("boot.pe.cli:app", "The preboot environment: build, list, use, USB stick image."),
    "boot": Lazy(
        "boot.cli:app",
        "Network boot and PE registration: credentials, sites, PE boots.",
        # dnsmasq-config computes the bench's link from registration's kernel arguments.
        wired=True,
    ),
}
"""Every domain's commands, by name. Why lazy: importing them all (SQLModel, the
server's stack, paramiko…) took 1.0-1.5 s before any command ran; a bench-side command
now imports its own module only (docs/benchmarks.md). The help texts are repeated here
so that ``masterline --help`` imports nothing; a test checks they match."""


def _resolve(ref: str) -> Any:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load(name: str) -> click.Command:
    """The click command of a lazy entry (imports its module)."""
    entry = LAZY[name]
    if entry.wired:
        from wiring import wire

        wire()
    if name == "scan":
        _print_labels_through_logistics()
    target = _resolve(entry.target)
    command: click.Command
    if isinstance(target, typer.Typer):
        for sub, ref in entry.extra:
            target.command(sub)(_resolve(ref))
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


def _print_labels_through_logistics() -> None:
    """``scan --print``: inventory's scan loop prints a received laptop's label through
    logistics, which it may not import (it sits above); the command line connects them.
    logistics' CLI is imported only when a label is printed."""
    from inventory.cli import LABEL_PRINTERS

    if _print_asset_label not in LABEL_PRINTERS:
        LABEL_PRINTERS.append(_print_asset_label)


def _print_asset_label(client: Any, device_id: int, printer: str) -> None:
    from logistics.cli_labels import print_asset_label

    print_asset_label(client, device_id, printer)


class LazyGroup(TyperGroup):
    """The top-level group: imports a domain's commands when they are used."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY:
            return command
        if self._listing:
            # The top-level help only needs the one-line help: import nothing.
            return TyperCommand(name=cmd_name, help=LAZY[cmd_name].help)
        command = load(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="masterline",
    help="Masterline: laptop staging from ship notice to teleworker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)
db_app = typer.Typer(help="Database schema (run where the server runs).")
demo_app = typer.Typer(help="Demo data and the embedded all-in-one run.")
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Create or upgrade the schema (SQLite file by default, or MASTERLINE_DATABASE_URL)."""
    from core.console import err_console
    from core.db import get_database
    from core.migrate import upgrade

    db = get_database()
    upgrade(db.url, revision)
    err_console.print(
        f"database at {db.engine.url.render_as_string(hide_password=True)} is up to date"
    )


def _boot_files_beside(host: str) -> None:
    """The boot-file server (``MASTERLINE_NETBOOT_FILES_PORT``) listens where the API
    does unless told otherwise (read by each worker process's lifespan), and its port is
    checked now: one line rather than a traceback from every worker's start."""
    from boot.netboot.fileserver import check_port

    os.environ.setdefault("MASTERLINE_NETBOOT_FILES_HOST", host)
    check_port()


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(envvar="MASTERLINE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MASTERLINE_PORT")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the API server (and the web console at /console/)."""
    import uvicorn

    from core.logs import configure

    configure()
    _boot_files_beside(host)
    # Live pages (server-sent events) stay open; a shutdown waits this long for them.
    graceful = 3

    if workers > 1:
        uvicorn.run(
            "api.main:app",
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            timeout_graceful_shutdown=graceful,
        )
    else:
        from api.app import create_app

        uvicorn.run(
            create_app(),
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=graceful,
        )


def up(
    host: Annotated[str, typer.Option(envvar="MASTERLINE_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="MASTERLINE_PORT")] = 8000,
) -> None:
    """Run the API and a worker in one process (the embedded default)."""
    import threading

    import uvicorn

    from api.app import create_app
    from core.db import get_database
    from provisioning.pipeline.engine import JobEngine
    from provisioning.pipeline.worker import config_from_env, start_companions

    _boot_files_beside(host)
    db = get_database()
    stop = threading.Event()
    engine = JobEngine(db, config_from_env())
    thread = threading.Thread(target=engine.run_forever, args=(stop,), name="worker", daemon=True)
    thread.start()
    start_companions(db, stop)
    try:
        uvicorn.run(create_app(db), host=host, port=port, log_level="warning")
    finally:
        stop.set()
        thread.join(timeout=60)


@demo_app.command("seed")
def demo_seed() -> None:
    """Load the small demo data set (idempotent) and print an admin token."""
    from demo.seed import seed

    token = seed()
    typer.echo(token)


@demo_app.command("run")
def demo_run(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    stop_with_parent: Annotated[
        bool, typer.Option(help="Stop when the parent process dies (what `make run` uses).")
    ] = False,
    vms: Annotated[
        str | None,
        typer.Option(
            "--vms",
            help="N QEMU laptops that network-boot the PE (root; minutes under TCG), "
            "instead of the process lab.",
        ),
    ] = None,
) -> None:
    """The whole main job on the embedded default: lab, API, worker, images, delivery,
    scan-in, bench view (what ``make run`` does); with --vms N, VM laptops from
    power-on to READY with nothing wired."""
    if vms is not None:
        from demo.vms import parse_vm_count, run_vm_demo

        run_vm_demo(parse_vm_count(vms), host=host, port=port, stop_with_parent=stop_with_parent)
        return
    from demo.run import run_demo

    run_demo(host=host, port=port, stop_with_parent=stop_with_parent)


def _database_errors() -> tuple[type[BaseException], ...]:
    """SQLAlchemy's "the database cannot answer" errors, if SQLAlchemy was loaded at all
    (evaluated only when an exception is being handled: start-up stays lazy)."""
    exc = sys.modules.get("sqlalchemy.exc")
    return (exc.OperationalError, exc.ProgrammingError) if exc is not None else ()


def main() -> None:
    try:
        app()
    except MasterlineError as e:
        from core.console import err_console

        err_console.print(f"[red]error:[/red] {e.message}")
        sys.exit(e.exit_code)
    except _database_errors() as e:
        from core.console import err_console

        # One line, not a traceback with the SQL: most often a database never upgraded.
        err_console.print(
            f"[red]error:[/red] the database cannot answer ({type(e).__name__}); "
            "is it reachable and upgraded? (masterline db upgrade)"
        )
        sys.exit(1)
    except KeyboardInterrupt:
        from core.console import err_console

        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
