"""The monthly satisfaction follow-up: who to call, drawn at random, and what they said.

**Population** of month M: the people whose laptop was delivered in M, and the people
who contacted the help desk in M (a contact recorded on their laptop), less those who
opted out and those whose personal data was erased. One stratum per client company.

**Sample size** per stratum, for a margin of error ``e`` on a proportion at a
confidence level ``c`` (Cochran):

    n0 = z² · p (1 - p) / e²        p = 0.5 (the worst case: no prior knowledge)
    n  = n0 / (1 + (n0 - 1) / N)    finite population correction, N = stratum size
    calls = min(N, ⌈n / r⌉)         r = expected response rate

z = 1.645, 1.960, 2.576 for 90, 95, 99 %. At 95 % and e = 10 %, n0 = 96.04: a client
with 40 people in the month needs 29 answers, one with 5,000 needs 95.

**Allocation**: each stratum is sized for the margin on its own ("equal precision"),
because results are read per client; a proportional allocation would leave a small
client with a handful of answers and a useless interval. A centre-wide figure weights
each client by its population.

**Draw**: inside each stratum, a simple random sample without replacement, in random
order (the calling order): ``random.Random(f"{seed}/{month}/{client_id}").sample`` over
the stratum's ids in ascending order. The seed is recorded with the survey, so the same
frame and seed give the same list.

**Results**: per client and question, the mean score with a Student-t interval whose
standard error carries the finite population correction: ``s / √n · √(1 - n/N)``.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlmodel import Session

from core.principal import Principal
from core.timeutil import utcnow
from helpdesk import repository
from helpdesk import repository_survey as survey_sql
from helpdesk.errors import CallClosed, CallNotFound, SurveyExists, SurveyNotFound
from helpdesk.models import (
    QUESTIONS,
    CallStatus,
    Survey,
    SurveyAnswer,
    SurveyCall,
    SurveyStratum,
)
from helpdesk.schemas import (
    AnswerIn,
    CallRead,
    ClientResult,
    ClientTrend,
    QuestionResult,
    StratumRead,
    SurveyCreate,
    SurveyRead,
    TrendPoint,
)

Z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}
OPEN = (CallStatus.PENDING, CallStatus.UNREACHABLE)
"""Calls still to make (an unreachable person is tried again)."""


# Sizing and drawing (pure).
def sample_size(population: int, *, margin: float, confidence: float, p: float = 0.5) -> int:
    """Answers needed in a stratum of ``population`` people (Cochran, with FPC)."""
    if population <= 0:
        return 0
    z = Z[confidence]
    n0 = z * z * p * (1 - p) / (margin * margin)
    return min(population, math.ceil(n0 / (1 + (n0 - 1) / population)))


def calls_needed(answers: int, population: int, response_rate: float) -> int:
    return min(population, math.ceil(answers / response_rate))


def draw(
    frame: Mapping[int, Sequence[int]], sizes: Mapping[int, int], *, seed: str, month: str
) -> dict[int, list[int]]:
    """``sizes[h]`` people of each stratum ``h``, uniformly without replacement, in a
    random order; the same arguments always give the same lists."""
    out: dict[int, list[int]] = {}
    for stratum in sorted(frame):
        people = sorted(frame[stratum])
        # Reproducible on purpose: the seed is recorded so the draw can be replayed.
        rng = random.Random(f"{seed}/{month}/{stratum}")  # noqa: S311
        out[stratum] = rng.sample(people, min(sizes.get(stratum, 0), len(people)))
    return out


# The frame.
def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def frame(session: Session, month: str) -> dict[int, list[int]]:
    """Client id -> the ids of the month's recipients and callers who may be called."""
    since, until = month_bounds(month)
    people = dict(survey_sql.recipients(session, since, until))
    people.update(survey_sql.callers(session, since, until))
    excluded = survey_sql.excluded_people(session, people)
    out: dict[int, list[int]] = {}
    for person, client in people.items():
        if person not in excluded:
            out.setdefault(client, []).append(person)
    return {c: sorted(ids) for c, ids in out.items()}


# Writes.
def create(session: Session, body: SurveyCreate, principal: Principal) -> Survey:
    """Draw the month's call list and record how.

    :raises SurveyExists: that month is already drawn (409).
    """
    if survey_sql.survey_by_month(session, body.month) is not None:
        raise SurveyExists(body.month)
    seed = body.seed or secrets.token_hex(8)
    strata_frame = frame(session, body.month)
    targets = {
        c: sample_size(len(ids), margin=body.margin, confidence=body.confidence)
        for c, ids in strata_frame.items()
    }
    sizes = {
        c: calls_needed(targets[c], len(ids), body.response_rate) for c, ids in strata_frame.items()
    }
    drawn = draw(strata_frame, sizes, seed=seed, month=body.month)
    survey = Survey(
        month=body.month,
        seed=seed,
        margin=body.margin,
        confidence=body.confidence,
        response_rate=body.response_rate,
        population=sum(len(v) for v in strata_frame.values()),
        sample=sum(len(v) for v in drawn.values()),
        created_by=principal.actor,
    )
    session.add(survey)
    session.flush()
    assert survey.id is not None
    position = 0
    for client_id, people in drawn.items():
        session.add(
            SurveyStratum(
                survey_id=survey.id,
                client_id=client_id,
                population=len(strata_frame[client_id]),
                target=targets[client_id],
                drawn=len(people),
            )
        )
        for person in people:
            position += 1
            session.add(
                SurveyCall(
                    survey_id=survey.id,
                    client_id=client_id,
                    teleworker_id=person,
                    position=position,
                )
            )
    session.flush()
    return survey


def get(session: Session, month: str) -> Survey:
    """:raises SurveyNotFound:"""
    survey = survey_sql.survey_by_month(session, month)
    if survey is None:
        raise SurveyNotFound(month)
    return survey


def _call(session: Session, call_id: int, principal: Principal) -> SurveyCall:
    return principal.visible(
        survey_sql.get_call_for_update(session, call_id), CallNotFound(str(call_id))
    )


def answer(session: Session, call_id: int, body: AnswerIn, principal: Principal) -> SurveyAnswer:
    """Record the answers of a pending call. The answer row names the survey and the
    client only: not the call, the person or the advisor.

    :raises CallNotFound: unknown or another company's.
    :raises CallClosed: already answered, declined… (409).
    """
    call = _call(session, call_id, principal)
    if call.status not in OPEN:
        raise CallClosed(call_id, str(call.status))
    call.status = CallStatus.ANSWERED
    call.attempts += 1
    call.updated_at = utcnow()
    session.add(call)
    row = SurveyAnswer(
        survey_id=call.survey_id,
        client_id=call.client_id,
        comment=body.comment,
        answered_on=utcnow().date(),
        **{q: getattr(body, q) for q in QUESTIONS},
    )
    session.add(row)
    session.flush()
    return row


def set_status(
    session: Session, call_id: int, status: CallStatus, principal: Principal
) -> SurveyCall:
    """A call that did not give answers: declined, unreachable (may be retried: it
    stays in the list with one more attempt), or the person opted out of surveys.

    :raises CallNotFound, CallClosed:
    """
    call = _call(session, call_id, principal)
    if call.status not in OPEN:
        raise CallClosed(call_id, str(call.status))
    call.status = status
    call.attempts += 1
    call.updated_at = utcnow()
    if status is CallStatus.OPTED_OUT and call.teleworker_id is not None:
        survey_sql.opt_out(session, call.teleworker_id)
    session.add(call)
    session.flush()
    return call


def opt_out(session: Session, teleworker_id: int, principal: Principal) -> None:
    """Never call this person for a survey again.

    :raises TeleworkerNotFound: unknown or another company's.
    """
    from logistics import service as logistics

    logistics.get_teleworker(session, teleworker_id, principal)
    survey_sql.opt_out(session, teleworker_id)
    session.flush()


# Reads.
def read(session: Session, survey: Survey, principal: Principal) -> SurveyRead:
    assert survey.id is not None
    codes = {c.id: c.code for c in repository.clients(session).values()}
    strata = [
        StratumRead(
            client_code=codes.get(s.client_id, ""),
            population=s.population,
            target=s.target,
            drawn=s.drawn,
        )
        for s in survey_sql.strata(session, survey.id)
        if principal.sees_client(s.client_id)
    ]
    return SurveyRead(
        id=survey.id,
        month=survey.month,
        seed=survey.seed,
        margin=survey.margin,
        confidence=survey.confidence,
        response_rate=survey.response_rate,
        population=sum(s.population for s in strata),
        sample=sum(s.drawn for s in strata),
        created_at=survey.created_at,
        strata=strata,
    )


def list_all(session: Session, principal: Principal) -> list[SurveyRead]:
    return [read(session, s, principal) for s in survey_sql.list_surveys(session)]


def call_list(
    session: Session,
    survey: Survey,
    principal: Principal,
    *,
    client_id: int | None,
    status: CallStatus | None,
) -> list[CallRead]:
    """The calls to make, in drawing order, with what an advisor needs to call: name,
    phone and language (not the address, not the e-mail)."""
    assert survey.id is not None
    scope = principal.client_scope if principal.bound else client_id
    rows = survey_sql.calls(session, survey.id, client_id=scope, status=status)
    people = repository.teleworkers(session, {r.teleworker_id for r in rows if r.teleworker_id})
    codes = {c.id: c.code for c in repository.clients(session).values()}
    out = []
    for r in rows:
        person = people.get(r.teleworker_id) if r.teleworker_id else None
        if person is not None and person.erased_at is not None:
            person = None
        out.append(
            CallRead(
                id=r.id or 0,
                position=r.position,
                client_code=codes.get(r.client_id, ""),
                status=r.status,
                attempts=r.attempts,
                name=person.name if person else None,
                phone=person.phone if person else None,
                language=str(person.language) if person else None,
            )
        )
    return out


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile (Cornish-Fisher expansion of the normal one:
    within 1 % of the exact value from 3 degrees of freedom, 0.1 % from 10)."""
    z = Z[confidence]
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def mean_ci(
    values: Sequence[float], *, population: int, confidence: float, name: str
) -> QuestionResult:
    n = len(values)
    if n == 0:
        return QuestionResult(question=name, n=0, mean=None, ci_low=None, ci_high=None)
    mean = sum(values) / n
    if n < 2:
        return QuestionResult(question=name, n=n, mean=round(mean, 3), ci_low=None, ci_high=None)
    var = sum((x - mean) ** 2 for x in values) / (n - 1)
    fpc = math.sqrt(max(0.0, 1 - n / population)) if population > n else 0.0
    half = t_quantile(confidence, n - 1) * math.sqrt(var / n) * fpc
    return QuestionResult(
        question=name,
        n=n,
        mean=round(mean, 3),
        ci_low=round(max(1.0, mean - half), 3),
        ci_high=round(min(5.0, mean + half), 3),
    )


def _overall(row: SurveyAnswer) -> float | None:
    scores = [getattr(row, q) for q in QUESTIONS if getattr(row, q) is not None]
    return sum(scores) / len(scores) if scores else None


def results(session: Session, survey: Survey, principal: Principal) -> list[ClientResult]:
    """Per client: each question's mean and interval, and the overall score."""
    assert survey.id is not None
    codes = {c.id: c.code for c in repository.clients(session).values()}
    out = []
    for stratum in survey_sql.strata(session, survey.id):
        if not principal.sees_client(stratum.client_id):
            continue
        rows = survey_sql.answers(session, [survey.id], stratum.client_id)
        n, conf = stratum.population, survey.confidence
        questions = [
            mean_ci(
                [getattr(r, q) for r in rows if getattr(r, q) is not None],
                population=n,
                confidence=conf,
                name=q,
            )
            for q in QUESTIONS
        ]
        overall = [x for x in (_overall(r) for r in rows) if x is not None]
        out.append(
            ClientResult(
                client_code=codes.get(stratum.client_id, ""),
                month=survey.month,
                population=stratum.population,
                answers=len(rows),
                questions=questions,
                overall=mean_ci(overall, population=n, confidence=conf, name="overall"),
            )
        )
    return out


def trend(session: Session, principal: Principal, *, months: int = 12) -> list[ClientTrend]:
    """Per client, the overall score of each of the last ``months`` surveys."""
    surveys = list(survey_sql.list_surveys(session))[-months:]
    points: dict[int, list[TrendPoint]] = {}
    for survey in surveys:
        assert survey.id is not None
        for stratum in survey_sql.strata(session, survey.id):
            if not principal.sees_client(stratum.client_id):
                continue
            rows = survey_sql.answers(session, [survey.id], stratum.client_id)
            overall = [x for x in (_overall(r) for r in rows) if x is not None]
            r = mean_ci(
                overall,
                population=stratum.population,
                confidence=survey.confidence,
                name="overall",
            )
            points.setdefault(stratum.client_id, []).append(
                TrendPoint(
                    month=survey.month, answers=r.n, mean=r.mean, ci_low=r.ci_low, ci_high=r.ci_high
                )
            )
    codes = {c.id: c.code for c in repository.clients(session).values()}
    return [ClientTrend(client_code=codes.get(c, ""), points=p) for c, p in sorted(points.items())]
