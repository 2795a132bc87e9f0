"""A bounded, seeded schemathesis run against the app: every operation, with an admin
token and a client-bound (dsi) token, a few generated cases each. No server error, and
every status code and content type the API answers is in its OpenAPI document.

Deterministic: hypothesis is derandomized (its seed comes from each test's name) and
keeps no example database, so every run sends the same cases.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    status_code_conformance,
)

from api.app import create_app
from core.db import Database
from core.principal import Role
from tests.support.factories import World

CASES_PER_OPERATION = 3
"""Per operation and token: ~70 operations x 2 tokens x 3 = ~400 cases."""

SKIPPED = {
    # Revoking a token could revoke the very token the run uses (ids are small).
    ("DELETE", "/tokens/{token_id}"),
    # Calls the subscriber's URL: outbound network, which tests do not have.
    ("POST", "/webhooks/{sub_id}/test"),
}

# The tus PATCH body: raw bytes, like application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture
def image_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from core.settings import get_settings

    monkeypatch.setenv("MASTERLINE_IMAGE_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.slow  # hundreds of generated requests per role
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("role", ["admin", "dsi"])
def test_the_api_answers_what_its_openapi_says(
    db: Database, world: World, image_store: None, role: str
) -> None:
    token = world.token(Role.ADMIN) if role == "admin" else world.token(Role.DSI, "ACME")
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(db))
    failures: list[str] = []
    cases = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIPPED:
            cases += _exercise(operation, headers, failures)
    assert not failures, f"{len(failures)} failures in {cases} cases:\n" + "\n\n".join(failures)
    assert cases >= 150, cases
    print(f"{cases} cases in {time.monotonic() - started:.1f} s")


def _exercise(operation: Any, headers: dict[str, str], failures: list[str]) -> int:
    """Run the operation's generated cases; append what failed; return how many ran."""
    label = f"{operation.method.upper()} {operation.path}"
    ran = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=CASES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal ran
        ran += 1
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as e:  # collect every failure
            failures.append(f"{label}: {e}"[:600])

    try:
        run()
    except (Exception, BaseExceptionGroup) as e:
        failures.append(f"{label}: {e}"[:600])
    return ran
