"""The phone menu's routing endpoint, and help codes themselves."""

from __future__ import annotations

import itertools
import random

from fastapi.testclient import TestClient

from core import helpcode
from core.principal import Role
from tests.conftest import auth
from tests.helpdesk.conftest import Desk
from tests.support.factories import World


def test_help_codes_are_short_digits_unique_and_round_trip() -> None:
    seen: set[str] = set()
    for device_id in itertools.chain(range(1, 3001), [9_999_999]):
        code = helpcode.encode(device_id)
        assert len(code) == 8 and code.isdigit()
        assert helpcode.decode(code) == device_id
        assert helpcode.decode(helpcode.pretty(code)) == device_id
        seen.add(code)
    assert len(seen) == 3001
    # Consecutive laptops do not get neighbouring numbers.
    assert abs(int(helpcode.encode(2)) - int(helpcode.encode(1))) > 1000
    # Past ten million: ten digits, still unique against the short form.
    for device_id in (10_000_000, 123_456_789):
        code = helpcode.encode(device_id)
        assert len(code) == 10 and helpcode.decode(code) == device_id


def test_the_check_digit_catches_every_single_typo_and_adjacent_swap() -> None:
    rng = random.Random(16)
    for device_id in rng.sample(range(1, 10_000_000), 300):
        code = helpcode.encode(device_id)
        for i in range(len(code)):
            for digit in "0123456789":
                if digit != code[i]:
                    typo = code[:i] + digit + code[i + 1 :]
                    assert helpcode.decode(typo) is None, (code, typo)
        for i in range(len(code) - 1):
            if code[i] != code[i + 1]:
                swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
                assert helpcode.decode(swapped) is None, (code, swapped)
    for junk in (
        "",
        "1234567",
        "123456789",
        "abcdefgh",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
        "12345678901",
    ):
        assert helpcode.decode(junk) is None


def _route(client: TestClient, token: str, number: str, *, json: bool = False) -> tuple[int, str]:
    headers = auth(token) | ({"Accept": "application/json"} if json else {})
    r = client.get("/helpdesk/route", params={"number": number}, headers=headers)
    return r.status_code, r.text


def test_the_phone_menu_routes_by_help_code_and_never_fails(
    app_client: TestClient, world: World, desk: Desk
) -> None:
    phone = world.token(Role.HELPDESK)  # the phone system: every client of the centre
    acme = helpcode.encode(desk.ids["ACMEH001"])
    globex = helpcode.encode(desk.ids["GLBXH001"])
    assert _route(app_client, phone, acme) == (200, "acme-support\n")
    assert _route(app_client, phone, helpcode.pretty(acme)) == (200, "acme-support\n")
    status, body = _route(app_client, phone, acme, json=True)
    assert (status, body) == (200, '{"queue":"acme-support","known":true}')
    # GLOBEX has no queue of its own: the centre's default, but a known laptop.
    assert _route(app_client, phone, globex, json=True)[1] == '{"queue":"centre","known":true}'
    wrong = acme[:-1] + str((int(acme[-1]) + 1) % 10)
    nobody = next(
        c
        for c in (helpcode.encode(i) for i in range(5_000_000, 5_000_100))
        if helpcode.decode(c) not in desk.ids.values()
    )
    for number in (wrong, nobody, "", "0", "#*12", "x" * 5000, "<script>", "1" * 40, "é"):
        assert _route(app_client, phone, number) == (200, "centre\n"), number
        assert _route(app_client, phone, number, json=True)[1] == (
            '{"queue":"centre","known":false}'
        )
    # A token bound to ACME routes ACME's laptops; another company's are "unknown".
    bound = world.token(Role.HELPDESK, "ACME")
    assert _route(app_client, bound, acme) == (200, "acme-support\n")
    assert _route(app_client, bound, globex, json=True)[1] == '{"queue":"centre","known":false}'
    # Without a token, or with a role that is not the desk's: refused like any route.
    assert app_client.get("/helpdesk/route", params={"number": acme}).status_code == 401
    assert _route(app_client, world.token(Role.TECHNICIAN), acme)[0] == 403


def test_without_any_queue_configured_the_default_is_named_default(
    app_client: TestClient, world: World
) -> None:
    assert _route(app_client, world.token(Role.ADMIN), "12345678") == (200, "default\n")
