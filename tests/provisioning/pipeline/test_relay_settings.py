"""Relay imaging's settings and the ledger's rule for a wave: pure, no lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.settings import get_settings
from provisioning.pipeline.bandwidth import RELAY_KEY, SHARE_KEY, counts_as_stream, drop_share
from provisioning.pipeline.worker import config_from_env
from provisioning.runs.models import ProvisioningRun


def test_relay_is_on_by_default_a_typo_is_refused_and_its_settings_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        for name in (
            "RELAY",
            "RELAY_WINDOW_SECONDS",
            "RELAY_MAX_MEMBERS",
            "RELAY_HOST",
            "RELAY_FIRST_CHUNK_SECONDS",
        ):
            monkeypatch.delenv(f"MASTERLINE_WORKER_{name}", raising=False)
        default = config_from_env(worker_id="w")
        assert default.relay is True
        assert (default.relay_window_seconds, default.relay_max_members) == (60.0, 32)
        # No address set: each laptop's is learned from the worker's session to it.
        assert (default.relay_host, default.relay_first_chunk_seconds) == ("", 60.0)
        for off in ("0", "off", " False "):
            monkeypatch.setenv("MASTERLINE_WORKER_RELAY", off)
            assert config_from_env(worker_id="w").relay is False
        for on in ("1", "on", " True "):
            monkeypatch.setenv("MASTERLINE_WORKER_RELAY", on)
            assert config_from_env(worker_id="w").relay is True
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY", "maybe")
        with pytest.raises(InvalidInput, match="MASTERLINE_WORKER_RELAY='maybe'"):
            config_from_env(worker_id="w")
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY", "1")
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY_WINDOW_SECONDS", "5")
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY_MAX_MEMBERS", "8")
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY_HOST", "10.0.0.2")
        config = config_from_env(worker_id="w")
        assert config.relay is True
        assert (config.relay_window_seconds, config.relay_max_members, config.relay_host) == (
            5.0,
            8,
            "10.0.0.2",
        )
        monkeypatch.setenv("MASTERLINE_WORKER_RELAY_FIRST_CHUNK_SECONDS", "15")
        assert config_from_env(worker_id="w").relay_first_chunk_seconds == 15.0
        for bad, why in (("0", "above 0"), ("soon", "above 0"), ("inf", "above 0")):
            monkeypatch.setenv("MASTERLINE_WORKER_RELAY_FIRST_CHUNK_SECONDS", bad)
            with pytest.raises(InvalidInput, match=why):
                config_from_env(worker_id="w")
        monkeypatch.delenv("MASTERLINE_WORKER_RELAY_FIRST_CHUNK_SECONDS")
        wildcard = "0.0.0.0"  # noqa: S104 - refused, never bound
        for bad, why in ((wildcard, "a wildcard"), ("worker.lan", "not an IP address")):
            monkeypatch.setenv("MASTERLINE_WORKER_RELAY_HOST", bad)
            with pytest.raises(InvalidInput, match=why):
                config_from_env(worker_id="w")
    finally:
        get_settings.cache_clear()


def _run(context: dict[str, object]) -> ProvisioningRun:
    return ProvisioningRun(device_id=1, client_id=1, context=context)


def test_a_wave_is_one_stream_of_the_ledger() -> None:
    assert counts_as_stream(_run({}))
    assert counts_as_stream(_run({RELAY_KEY: None}))  # left its wave
    assert counts_as_stream(_run({RELAY_KEY: {"wave": "w1", "carrier": True}}))
    assert not counts_as_stream(_run({RELAY_KEY: {"wave": "w1", "carrier": False}}))


def test_a_new_stream_attempt_is_in_no_wave_yet() -> None:
    run = _run({RELAY_KEY: {"wave": "w1", "carrier": False}, SHARE_KEY: 5})
    drop_share(run, "stream")
    assert run.context[RELAY_KEY] is None and run.context[SHARE_KEY] == 0
    assert counts_as_stream(run)
