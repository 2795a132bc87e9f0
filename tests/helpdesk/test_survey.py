"""The satisfaction follow-up: sizing, the draw (checked statistically), the call list,
answers, results with intervals."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from core.db import Database
from core.principal import SYSTEM, Role
from core.timeutil import utcnow
from helpdesk import survey
from helpdesk.models import SurveyAnswer
from helpdesk.schemas import ContactCreate
from tests.conftest import auth
from tests.helpdesk.conftest import Desk
from tests.support.factories import World


# Sizing.
def test_sample_sizes_follow_cochran_with_the_finite_population_correction() -> None:
    # n0 = 1.96² · 0.25 / 0.1² = 96.04
    assert survey.sample_size(40, margin=0.10, confidence=0.95) == math.ceil(
        96.04 / (1 + 95.04 / 40)
    )
    assert survey.sample_size(40, margin=0.10, confidence=0.95) == 29
    assert survey.sample_size(5000, margin=0.10, confidence=0.95) == 95
    assert survey.sample_size(100_000, margin=0.05, confidence=0.95) == 383
    assert survey.sample_size(100_000, margin=0.05, confidence=0.99) == 660
    assert survey.sample_size(3, margin=0.10, confidence=0.95) == 3
    assert survey.sample_size(0, margin=0.10, confidence=0.95) == 0
    assert survey.calls_needed(29, 40, 0.6) == 40
    assert survey.calls_needed(29, 400, 0.6) == 49


def _chi_square_p(observed: list[int], expected: float) -> float:
    """Upper tail of a chi-square goodness-of-fit statistic (Wilson-Hilferty: accurate to
    about 0.001 for the degrees of freedom used here)."""
    stat = sum((o - expected) ** 2 / expected for o in observed)
    k = len(observed) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def test_the_draw_is_uniform_within_each_stratum_over_many_seeds() -> None:
    """Over 3,000 seeded draws every person of a stratum is picked about equally often
    (chi-square test), strata never mix and their sizes are exact. The seeds are fixed,
    so the test gives the same answer every run; a biased sampler fails it."""
    frame = {1: list(range(100, 160)), 2: list(range(500, 530)), 3: [900, 901]}
    sizes = {1: 12, 2: 9, 3: 5}
    draws = 3000
    counts: dict[int, Counter[int]] = {h: Counter() for h in frame}
    for i in range(draws):
        drawn = survey.draw(frame, sizes, seed=f"seed-{i}", month="2026-11")
        for h, people in drawn.items():
            assert len(people) == min(sizes[h], len(frame[h]))
            assert len(set(people)) == len(people) and set(people) <= set(frame[h])
            counts[h].update(people)
    for h in (1, 2):
        observed = [counts[h][p] for p in frame[h]]
        p_value = _chi_square_p(observed, draws * sizes[h] / len(frame[h]))
        assert p_value > 0.001, (h, p_value)
    assert counts[3] == Counter({900: draws, 901: draws})  # smaller than its size: everyone

    # The same check rejects a sampler that favours the first ids.
    biased: Counter[int] = Counter()
    for i in range(draws):
        people = frame[1]
        first = survey.draw({1: people[:30]}, {1: 7}, seed=f"b-{i}", month="x")[1]
        rest = survey.draw({1: people[30:]}, {1: 5}, seed=f"b-{i}", month="x")[1]
        biased.update(first + rest)
    observed = [biased[p] for p in frame[1]]
    assert _chi_square_p(observed, draws * 12 / len(frame[1])) < 1e-6


def test_the_same_seed_gives_the_same_list() -> None:
    frame = {1: list(range(50)), 2: list(range(100, 180))}
    a = survey.draw(frame, {1: 10, 2: 20}, seed="abc", month="2026-11")
    assert a == survey.draw(
        {2: frame[2][::-1], 1: frame[1]}, {1: 10, 2: 20}, seed="abc", month="2026-11"
    )
    assert a != survey.draw(frame, {1: 10, 2: 20}, seed="abd", month="2026-11")


def test_intervals_narrow_with_more_answers_and_vanish_on_a_census() -> None:
    few = survey.mean_ci([4, 5, 3, 4], population=1000, confidence=0.95, name="q")
    many = survey.mean_ci([4, 5, 3, 4] * 25, population=1000, confidence=0.95, name="q")
    assert few.mean == many.mean == 4.0
    assert few.ci_low is not None and many.ci_low is not None
    assert few.ci_high is not None and many.ci_high is not None
    assert few.ci_low < many.ci_low < 4.0 < many.ci_high <= few.ci_high
    census = survey.mean_ci([4, 5, 3, 4], population=4, confidence=0.95, name="q")
    assert (census.ci_low, census.ci_high) == (4.0, 4.0)
    # t(0.975, 3) = 3.182: the expansion is within 1 % from three degrees of freedom.
    assert survey.t_quantile(0.95, 3) == pytest.approx(3.182, rel=0.01)
    assert survey.t_quantile(0.95, 30) == pytest.approx(2.042, rel=0.001)


# The whole follow-up, through the API.
def _contact(db: Database, device_id: int, days_ago: int = 0) -> None:
    from helpdesk import service

    with db.session() as s:
        service.record_contact(
            s,
            ContactCreate(
                device_id=device_id,
                channel="phone",
                reason="vpn",
                at=utcnow() - timedelta(days=days_ago),
            ),
            SYSTEM,
        )


def test_a_months_follow_up_from_draw_to_results(
    app_client: TestClient, world: World, desk: Desk, db: Database
) -> None:
    month = utcnow().strftime("%Y-%m")
    admin = auth(world.token(Role.ADMIN))
    _contact(db, desk.ids["ACMEH002"])  # John called (his laptop is not delivered yet)
    # Gina opts out before the draw.
    r = app_client.post(
        f"/helpdesk/teleworkers/{desk.people['gina']}/opt-out",
        headers=auth(world.token(Role.HELPDESK, "GLOBEX")),
    )
    assert r.status_code == 204
    body = {"month": month, "margin": 0.1, "seed": "s1"}
    assert (
        app_client.post(
            "/helpdesk/surveys", json=body, headers=auth(world.token(Role.HELPDESK))
        ).status_code
        == 403
    )
    r = app_client.post("/helpdesk/surveys", json=body, headers=admin)
    assert r.status_code == 201, r.text
    drawn = r.json()
    # Amélie (delivered this month) and John (called this month); Gina opted out.
    assert (drawn["population"], drawn["sample"], drawn["seed"]) == (2, 2, "s1")
    assert [(s["client_code"], s["population"], s["target"]) for s in drawn["strata"]] == [
        ("ACME", 2, 2)
    ]
    assert app_client.post("/helpdesk/surveys", json=body, headers=admin).status_code == 409

    desk_token = auth(world.token(Role.HELPDESK, "ACME"))
    calls = app_client.get(f"/helpdesk/surveys/{month}/calls", headers=desk_token).json()
    assert sorted(c["name"] for c in calls) == ["Amélie Poulain", "John Smith"]
    assert {c["phone"] for c in calls} == {"+33 6 12 34 56 78", "+44 20 7946 0000"}
    assert "Trois Frères" not in str(calls) and "@" not in str(calls)
    globex = auth(world.token(Role.HELPDESK, "GLOBEX"))
    assert app_client.get(f"/helpdesk/surveys/{month}/calls", headers=globex).json() == []
    first, second = calls
    answers = {
        "reachability": 4,
        "welcome": 5,
        "speed": 3,
        "availability": 4,
        "clarity": 5,
        "solution": 4,
    }
    other = app_client.post(f"/helpdesk/calls/{first['id']}/answer", json=answers, headers=globex)
    assert other.status_code == 404
    r = app_client.post(
        f"/helpdesk/calls/{first['id']}/answer",
        json=answers | {"comment": "Très bien"},
        headers=desk_token,
    )
    assert r.status_code == 201, r.text
    again = app_client.post(
        f"/helpdesk/calls/{first['id']}/answer", json=answers, headers=desk_token
    )
    assert again.status_code == 409
    r = app_client.post(
        f"/helpdesk/calls/{second['id']}/status", json={"status": "unreachable"}, headers=desk_token
    )
    assert (r.status_code, r.json()["attempts"]) == (200, 1)
    r = app_client.post(
        f"/helpdesk/calls/{second['id']}/answer",
        json={q: 2 for q in answers} | {"solution": None},
        headers=desk_token,
    )
    assert r.status_code == 201  # reached on the second try
    bad = app_client.post(
        f"/helpdesk/calls/{second['id']}/answer", json=answers | {"speed": 6}, headers=desk_token
    )
    assert bad.status_code == 422

    results = app_client.get(
        f"/helpdesk/surveys/{month}/results", headers=auth(world.token(Role.DSI, "ACME"))
    ).json()
    (acme,) = results
    assert (acme["client_code"], acme["answers"], acme["population"]) == ("ACME", 2, 2)
    by_q = {q["question"]: q for q in acme["questions"]}
    assert [by_q[q]["mean"] for q in ("reachability", "welcome", "solution")] == [3.0, 3.5, 4.0]
    assert by_q["solution"]["n"] == 1
    assert acme["overall"]["mean"] == pytest.approx((25 / 6 + 2.0) / 2, abs=0.001)
    # Everyone answered (a census): no sampling error left.
    assert by_q["welcome"]["ci_low"] == by_q["welcome"]["ci_high"] == 3.5
    trend = app_client.get("/helpdesk/satisfaction/trend", headers=admin).json()
    assert [(t["client_code"], [p["month"] for p in t["points"]]) for t in trend] == [
        ("ACME", [month])
    ]
    assert app_client.get(f"/helpdesk/surveys/{month}/results", headers=globex).json() == []


def test_answers_record_no_advisor_and_no_person(db: Database) -> None:
    columns = {c["name"] for c in inspect(db.engine).get_columns(SurveyAnswer.__tablename__)}
    assert not any(
        word in c
        for c in columns
        for word in ("advisor", "actor", "token", "teleworker", "call", "by")
    )
    assert {"survey_id", "client_id", "comment", "answered_on"} <= columns


def test_erased_people_are_never_drawn(world: World, desk: Desk, db: Database) -> None:
    from logistics.retention import purge_personal_data

    month = utcnow().strftime("%Y-%m")
    with db.session() as s:
        purge_personal_data(s, retention_days=1, now=utcnow() + timedelta(days=2))
    with db.session() as s:
        frame: dict[Any, Any] = survey.frame(s, month)
    # Amélie and Gina were erased (delivered, then past retention); John was not delivered.
    assert frame == {}
