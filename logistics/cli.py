"""Typer sub-app of this domain (filled in by its issue)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dispatch, labels, webhooks, Autopilot export.")
