"""``masterline tokens``: server-side token administration (needs database access)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from api import service
from api.schemas import TokenRead
from core.console import JsonFlag, console, print_json
from core.db import get_database
from core.principal import Role

app = typer.Typer(help="Create, list and revoke API tokens (run where the server runs).")


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what holds it.")],
    role: Annotated[Role, typer.Option(help="admin, technician, dsi, logistics or helpdesk.")],
    client: Annotated[
        str | None, typer.Option(help="Client code (dsi, logistics; optional for helpdesk).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it once."""
    with get_database().session() as session:
        row, clear = service.create_token(session, name=name, role=role, client_code=client)
        data = TokenRead.model_validate(row).model_dump(mode="json")
    if as_json:
        print_json({**data, "token": clear})
    else:
        console.print(f"token {data['id']} ({role.value}) created; store it now, shown once:")
        typer.echo(clear)


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List tokens (prefixes only)."""
    with get_database().session(write=False) as session:
        rows = [
            TokenRead.model_validate(t).model_dump(mode="json")
            for t in service.list_tokens(session)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "name", "prefix", "role", "client", "revoked")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["prefix"] + "…",
            r["role"],
            str(r["client_id"] or ""),
            r["revoked_at"] or "",
        )
    console.print(table)


@app.command("revoke")
def revoke(token_id: int) -> None:
    """Revoke a token; it stops working at once."""
    with get_database().session() as session:
        service.revoke_token(session, token_id)
    console.print(f"token {token_id} revoked")
