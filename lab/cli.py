"""Typer sub-app of this domain (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The device lab: lab laptops for tests and rehearsal.")
