"""``masterline helpdesk survey …``: the monthly satisfaction follow-up (draw, calls,
answers, status, results), through the API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from core.client import ApiClient
from core.console import ApiUrlOpt, JsonFlag, TokenOpt, console, print_json

survey_app = typer.Typer(help="The monthly satisfaction follow-up.")


@survey_app.command("draw")
def survey_draw(
    month: Annotated[str, typer.Argument(help="YYYY-MM: the month sampled.")],
    margin: Annotated[float, typer.Option()] = 0.10,
    confidence: Annotated[float, typer.Option()] = 0.95,
    response_rate: Annotated[float, typer.Option()] = 1.0,
    seed: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Draw the month's call list (admin)."""
    payload = {
        "month": month,
        "margin": margin,
        "confidence": confidence,
        "response_rate": response_rate,
        "seed": seed,
    }
    with ApiClient(api_url, token) as client:
        row = client.post("/helpdesk/surveys", json=payload)
    console.print(
        f"survey {row['month']}: {row['sample']} call(s) out of {row['population']} "
        f"(seed {row['seed']})"
    )
    for s in row["strata"]:
        needed = s["target"]
        console.print(f"  {s['client_code']}: {s['drawn']} of {s['population']} (need {needed})")


@survey_app.command("calls")
def survey_calls(
    month: str, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """The call list."""
    with ApiClient(api_url, token) as client:
        rows = client.get(f"/helpdesk/surveys/{month}/calls")
    if as_json:
        print_json(rows)
        return
    table = Table("call", "#", "client", "name", "phone", "lang", "status")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["position"]),
            r["client_code"],
            r["name"] or "-",
            r["phone"] or "-",
            r["language"] or "-",
            r["status"],
        )
    console.print(table)


Score = Annotated[int | None, typer.Option(min=1, max=5)]


@survey_app.command("answer")
def survey_answer(
    call_id: int,
    reachability: Score = None,
    welcome: Score = None,
    speed: Score = None,
    availability: Score = None,
    clarity: Score = None,
    solution: Score = None,
    comment: Annotated[str | None, typer.Option()] = None,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Record a call's answers (1-5 each)."""
    payload = {
        "reachability": reachability,
        "welcome": welcome,
        "speed": speed,
        "availability": availability,
        "clarity": clarity,
        "solution": solution,
        "comment": comment,
    }
    with ApiClient(api_url, token) as client:
        client.post(f"/helpdesk/calls/{call_id}/answer", json=payload)
    console.print(f"call {call_id} answered")


@survey_app.command("status")
def survey_status(
    call_id: int,
    status: Annotated[str, typer.Argument(help="declined, unreachable or opted_out")],
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    with ApiClient(api_url, token) as client:
        row = client.post(f"/helpdesk/calls/{call_id}/status", json={"status": status})
    console.print(f"call {call_id}: {row['status']} (attempt {row['attempts']})")


@survey_app.command("results")
def survey_results(
    month: str, as_json: JsonFlag = False, api_url: ApiUrlOpt = None, token: TokenOpt = None
) -> None:
    """Per client: mean score and confidence interval of each question."""
    with ApiClient(api_url, token) as client:
        rows = client.get(f"/helpdesk/surveys/{month}/results")
    if as_json:
        print_json(rows)
        return
    for r in rows:
        console.print(f"[bold]{r['client_code']}[/bold] {r['month']}: {r['answers']} answer(s)")
        for q in [*r["questions"], r["overall"]]:
            ci = f"[{q['ci_low']}, {q['ci_high']}]" if q["ci_low"] is not None else ""
            mean = q["mean"] if q["mean"] is not None else "-"
            console.print(f"  {q['question']}: {mean} {ci} (n={q['n']})")
