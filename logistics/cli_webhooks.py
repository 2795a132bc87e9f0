"""Webhook commands: ``webhooks add|list|test|replay|log`` talk to the API; ``webhooks send``
(the sender) runs where the database is."""

from __future__ import annotations

import signal
from typing import Annotated

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, err_console, print_json

webhooks_app = typer.Typer(help="Webhook subscriptions, the sender, the delivery log.")


# Webhooks.
@webhooks_app.command("add")
def webhooks_add(
    url: str,
    events: Annotated[
        list[str] | None, typer.Option("--event", help="device.<state> (repeat), default all.")
    ] = None,
    client_code: Annotated[str | None, typer.Option("--client", help="Admins: client.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Subscribe a URL; prints the generated signing secret once."""
    body = {
        "url": url,
        "event_types": events or ["*"],
        "client_code": client_code,
        "description": description,
    }
    with ApiClient(api_url, token) as client:
        row = client.post("/webhooks", json=body)
    if as_json:
        print_json(row)
        return
    console.print(f"subscription {row['id']} created for {', '.join(row['event_types'])}")
    console.print(f"secret (shown once): {row['secret']}")


@webhooks_app.command("list")
def webhooks_list(
    as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Subscriptions you can see (secrets are never shown)."""
    with ApiClient(api_url, token) as client:
        rows = client.get("/webhooks")
    if as_json:
        print_json(rows)
        return
    table = Table("id", "client", "url", "events", "active")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["client_id"]),
            r["url"],
            ", ".join(r["event_types"]),
            "yes" if r["active"] else "paused",
        )
    console.print(table)


@webhooks_app.command("test")
def webhooks_test(sub_id: int, api_url: ApiUrlOpt = None, token: TokenOpt = None) -> None:
    """Send a signed test message now."""
    with ApiClient(api_url, token) as client:
        r = client.post(f"/webhooks/{sub_id}/test")
    if r["delivered"]:
        console.print(f"delivered ({r['status_code']}), webhook-id {r['message_id']}")
        return
    err_console.print(f"not delivered: {r['error'] or r['status_code']}")
    raise typer.Exit(1)


@webhooks_app.command("replay")
def webhooks_replay(
    sub_id: int,
    since_seq: Annotated[int | None, typer.Option(help="Every event after this seq.")] = None,
    delivery: Annotated[list[int] | None, typer.Option(help="Delivery ids (repeat).")] = None,
    failed: Annotated[bool, typer.Option(help="Every delivery that gave up.")] = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Queue events again with their original webhook-id."""
    body = {"since_seq": since_seq, "delivery_ids": delivery, "failed_only": failed}
    with ApiClient(api_url, token) as client:
        r = client.post(f"/webhooks/{sub_id}/replay", json=body)
    console.print(f"{r['requeued']} requeued, {r['created']} new")


@webhooks_app.command("log")
def webhooks_log(
    sub_id: int,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    cursor: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The delivery log of a subscription."""
    params = {
        k: v
        for k, v in {"status": status, "cursor": cursor, "limit": limit}.items()
        if v is not None
    }
    with ApiClient(api_url, token) as client:
        page = client.get(f"/webhooks/{sub_id}/deliveries", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "webhook-id", "type", "status", "attempts", "last", "next attempt")
    for d in page["items"]:
        last = str(d["last_status_code"] or d["last_error"] or "")
        table.add_row(
            str(d["id"]),
            d["message_id"],
            d["event_type"],
            d["status"],
            str(d["attempts"]),
            last,
            d["next_attempt_at"],
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}")


@webhooks_app.command("send")
def webhooks_send(
    once: Annotated[bool, typer.Option(help="One round, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Idle poll interval, seconds.")] = 1.0,
    backoff: Annotated[float, typer.Option(help="First retry delay, seconds.")] = 5.0,
    max_attempts: Annotated[int, typer.Option(min=1)] = 12,
    lease: Annotated[float, typer.Option(help="Seconds before a claimed send is retried.")] = 60.0,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Deadline of a whole HTTP call (not per read), seconds "
            "(default: MASTERLINE_WEBHOOK_DEADLINE_SECONDS, 10)."
        ),
    ] = None,
) -> None:
    """Run the webhook sender (server side). Safe to run several; safe to kill."""
    import dataclasses
    import logging

    from core.db import get_database
    from logistics.sender import SenderPolicy, run_sender

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    policy = SenderPolicy(backoff_seconds=backoff, max_attempts=max_attempts, lease_seconds=lease)
    if timeout is not None:
        policy = dataclasses.replace(policy, timeout_seconds=timeout)
    run_sender(
        get_database(), policy=policy, interval=interval, once=once, should_stop=lambda: stop["now"]
    )
