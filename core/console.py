"""Rich consoles and small CLI helpers shared by every domain's Typer sub-app."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console(highlight=False)
# Errors are one line whatever the terminal's width (scripts and people grep them):
# Rich would wrap a long one at the width it finds.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ApiUrlOpt = Annotated[
    str | None,
    typer.Option("--api-url", envvar="MASTERLINE_API_URL", help="Masterline API base URL."),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="MASTERLINE_TOKEN", help="API token.", show_default=False),
]


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
