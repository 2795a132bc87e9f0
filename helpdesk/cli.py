"""``masterline helpdesk …``: the help desk from a terminal. Every command talks to the API
(an advisor's PC needs a URL and a token, like a bench PC); the retention purge is
``masterline logistics purge``, which covers the help desk's data too."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json
from core.errors import InvalidInput
from helpdesk.cli_survey import survey_app

app = typer.Typer(help="Help desk: look-up, phone routing, articles, sheets, contacts, surveys.")
articles_app = typer.Typer(help="The knowledge base (Markdown, French and English, versioned).")
report_app = typer.Typer(help="Contact reports.")
app.add_typer(articles_app, name="articles")
app.add_typer(survey_app, name="survey")
app.add_typer(report_app, name="report")

LangOpt = Annotated[str, typer.Option("--lang", help="fr or en.")]
ClientOpt = Annotated[str | None, typer.Option("--client", help="Client code.")]


def _client(api_url: str | None, token: str | None) -> ApiClient:
    return ApiClient(api_url, token)


# Look-up and routing.
@app.command("lookup")
def lookup(
    identifier: Annotated[
        str, typer.Argument(help="Serial, tag, hostname, e-mail, tracking, help code.")
    ],
    lang: LangOpt = "fr",
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Everything about the caller's laptop."""
    with _client(api_url, token) as client:
        result = client.post("/helpdesk/lookup", json={"q": identifier, "language": lang})
    if as_json:
        print_json(result)
        return
    for card in result["items"]:
        _print_card(card)


def _print_card(card: dict[str, Any]) -> None:
    client = card.get("client") or {}
    staged = card["staged"]
    console.print(
        f"[bold]{card['serial']}[/bold] ({card['vendor']} {card.get('model') or ''}) "
        f"client {client.get('code', '-')} · help code {card['help_code']} · "
        f"matched by {', '.join(card['matched_by'])}"
    )
    console.print(f"  state {card['state']} since {card['state_changed_at']}")
    shipment = card.get("shipment")
    if shipment:
        console.print(
            f"  shipment {shipment['carrier']} {shipment['tracking']} {shipment['status']}"
        )
    person = card.get("teleworker")
    if person:
        console.print(f"  teleworker {person['name']} <{person['email']}> ({person['language']})")
    source = "as staged" if staged["recorded"] else "client configuration now"
    console.print(
        f"  hostname {staged.get('hostname') or '-'} · image {staged.get('image') or '-'} · "
        f"VPN {staged.get('vpn_kind') or '-'} ({source})"
    )
    for tool in staged["tools"]:
        mark = {True: "ok", False: "MISSING", None: "?"}[tool["verified"]]
        console.print(
            f"  tool {tool['name']} {tool.get('version') or tool.get('package') or ''} [{mark}]"
        )
    queue = card["queue"]
    console.print(f"  queue {queue['name']} {queue.get('phone_number') or ''}")
    for article in card["articles"]:
        console.print(f"  article #{article['id']} {article['title']} ({article['language']})")
    for event in card["events"][:5]:
        console.print(f"  {event['at']} {event['event']} → {event['to_state']}")


@app.command("route")
def route(
    number: Annotated[str, typer.Argument(help="The number a caller typed.")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Which queue the phone menu sends this number to."""
    with _client(api_url, token) as client:
        console.print(client.get("/helpdesk/route", params={"number": number}).strip())


@app.command("queue")
def set_queue(
    name: Annotated[str, typer.Option(help="Queue name the phone system knows.")],
    client_code: ClientOpt = None,
    phone: Annotated[str | None, typer.Option(help="Number printed on sheets.")] = None,
    hours: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Set a client's queue (or, without --client, the centre's default) (admin)."""
    path = f"/helpdesk/queues/{client_code}" if client_code else "/helpdesk/queues/default"
    with _client(api_url, token) as client:
        row = client.request(
            "PUT", path, json={"name": name, "phone_number": phone, "hours": hours}
        )
    console.print(f"queue of {row['client_code'] or 'the centre (default)'}: {row['name']}")


@app.command("queues")
def list_queues(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    with _client(api_url, token) as client:
        rows = client.get("/helpdesk/queues")
    if as_json:
        print_json(rows)
        return
    table = Table("client", "queue", "phone", "hours")
    for r in rows:
        table.add_row(
            r["client_code"] or "(default)", r["name"], r["phone_number"] or "", r["hours"] or ""
        )
    console.print(table)


# Articles.
def _tags(vpn: list[str], tool: list[str], model: list[str], os: list[str]) -> dict[str, Any]:
    return {"vpn": vpn, "tools": tool, "models": model, "os": os}


VpnOpt = Annotated[list[str], typer.Option("--vpn", help="VPN kind it applies to (repeat).")]
ToolOpt = Annotated[list[str], typer.Option("--tool", help="Tool it applies to (repeat).")]
ModelOpt = Annotated[list[str], typer.Option("--model", help="'Vendor Model' (repeat).")]
OsOpt = Annotated[list[str], typer.Option("--os", help="windows or linux (repeat).")]
SectionOpt = Annotated[
    str | None, typer.Option("--sheet", help="Welcome sheet section: sign_in, vpn, tools.")
]
BodyArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Markdown file.")]


@articles_app.command("add")
def add_article(
    body: BodyArg,
    slug: Annotated[str, typer.Option()],
    title: Annotated[str, typer.Option()],
    lang: LangOpt = "fr",
    client_code: ClientOpt = None,
    vpn: VpnOpt = [],  # noqa: B006 (Typer reads the default; never mutated)
    tool: ToolOpt = [],  # noqa: B006
    model: ModelOpt = [],  # noqa: B006
    os: OsOpt = [],  # noqa: B006
    sheet: SectionOpt = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A new article from a Markdown file."""
    payload = {
        "client_code": client_code,
        "slug": slug,
        "language": lang,
        "title": title,
        "body": body.read_text(encoding="utf-8"),
        "tags": _tags(vpn, tool, model, os),
        "welcome_section": sheet,
    }
    with _client(api_url, token) as client:
        row = client.post("/helpdesk/articles", json=payload)
    console.print(
        f"article #{row['id']} {row['slug']} ({row['language']}) version {row['version']}"
    )


@articles_app.command("edit")
def edit_article(
    article_id: int,
    body: BodyArg,
    based_on: Annotated[int, typer.Option(help="The version you edited.")],
    title: Annotated[str, typer.Option()],
    vpn: VpnOpt = [],  # noqa: B006
    tool: ToolOpt = [],  # noqa: B006
    model: ModelOpt = [],  # noqa: B006
    os: OsOpt = [],  # noqa: B006
    sheet: SectionOpt = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A new version of an article (refused if someone else edited it since)."""
    payload = {
        "based_on": based_on,
        "title": title,
        "body": body.read_text(encoding="utf-8"),
        "tags": _tags(vpn, tool, model, os),
        "welcome_section": sheet,
    }
    with _client(api_url, token) as client:
        row = client.request("PUT", f"/helpdesk/articles/{article_id}", json=payload)
    console.print(f"article #{row['id']} is now version {row['version']}")


@articles_app.command("show")
def show_article(
    article_id: int,
    version: Annotated[int | None, typer.Option()] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    params = {"version": version} if version else {}
    with _client(api_url, token) as client:
        row = client.get(f"/helpdesk/articles/{article_id}", params=params)
    if as_json:
        print_json(row)
        return
    console.print(f"[bold]{row['title']}[/bold] — v{row['version']} by {row['author']}")
    console.print(row["body"], markup=False)


@articles_app.command("list")
def list_articles(
    client_code: ClientOpt = None,
    lang: Annotated[str | None, typer.Option("--lang")] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    params = {k: v for k, v in (("client", client_code), ("language", lang)) if v}
    with _client(api_url, token) as client:
        rows = client.get("/helpdesk/articles", params=params)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        console.print(f"#{r['id']} {r['slug']} ({r['language']}) v{r['version']}: {r['title']}")


@app.command("search")
def search(
    query: str,
    client_code: ClientOpt = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Search the articles (accents and case ignored)."""
    params = {"q": query, **({"client": client_code} if client_code else {})}
    with _client(api_url, token) as client:
        rows = client.get("/helpdesk/search", params=params)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        console.print(
            f"#{r['id']} {r['title']} ({r['client_code']}, {r['language']}): {r['snippet']}"
        )


# Contacts, reports, sheets.
@app.command("contact")
def contact(
    channel: Annotated[str, typer.Option(help="phone, email, chat, walk_in")],
    reason: Annotated[str, typer.Option(help="vpn, collaboration_tool, sign_in, hardware, …")],
    device: Annotated[int | None, typer.Option(help="The laptop's id (from lookup).")] = None,
    client_code: ClientOpt = None,
    item: Annotated[str | None, typer.Option(help="vpn:<kind>, tool:<name>, …")] = None,
    resolved: Annotated[bool, typer.Option(help="Resolved at first contact.")] = False,
    article: Annotated[int | None, typer.Option(help="The article that helped.")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Record a contact."""
    payload = {
        "device_id": device,
        "client_code": client_code,
        "channel": channel,
        "reason": reason,
        "item": item,
        "resolved_first_contact": resolved,
        "article_id": article,
        "note": note,
    }
    with _client(api_url, token) as client:
        row = client.post("/helpdesk/contacts", json=payload)
    console.print(f"contact #{row['id']} recorded ({row['week']})")


@report_app.command("reasons")
def report_reasons(
    csv: Annotated[bool, typer.Option("--csv")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Contacts per week, client, model, reason and configuration item."""
    _report("/helpdesk/reports/reasons", csv, api_url, token)


@report_app.command("waves")
def report_waves(
    csv: Annotated[bool, typer.Option("--csv")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Contacts per 100 laptops in their first 10 days at home, per wave."""
    _report("/helpdesk/reports/waves", csv, api_url, token)


def _report(path: str, csv: bool, api_url: str | None, token: str | None) -> None:
    with _client(api_url, token) as client:
        if csv:
            typer.echo(client.raw("GET", path, params={"format": "csv"}).text, nl=False)
            return
        print_json(client.get(path))


@app.command("welcome")
def welcome(
    output: Annotated[Path, typer.Option("-o", "--output", help="PDF file to write.")],
    device: Annotated[int | None, typer.Option(help="One laptop's id.")] = None,
    delivery: Annotated[int | None, typer.Option(help="A delivery's shipped laptops.")] = None,
    dispatch_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="A dispatch CSV.")
    ] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Welcome sheets to print and put in the boxes (logistics, admin)."""
    if sum(x is not None for x in (device, delivery, dispatch_file)) != 1:
        raise InvalidInput("give exactly one of --device, --delivery, --dispatch-file")
    with _client(api_url, token) as client:
        if dispatch_file is not None:
            response = client.raw(
                "POST",
                "/helpdesk/welcome/dispatch-file",
                content=dispatch_file.read_bytes(),
                headers={"content-type": "text/csv"},
            )
        else:
            params = {"device_id": device} if device else {"delivery_id": delivery}
            response = client.raw("GET", "/helpdesk/welcome", params=params)
    output.write_bytes(response.content)
    console.print(f"wrote {output} ({len(response.content)} bytes)")
