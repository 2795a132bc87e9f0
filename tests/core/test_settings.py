"""One settings object, read from ``MASTERLINE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def test_settings_come_from_masterline_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MASTERLINE_DATABASE_URL", "postgresql+psycopg://u@db.example/ml")
    monkeypatch.setenv("MASTERLINE_SQLITE_BUSY_TIMEOUT_MS", "2500")
    monkeypatch.setenv("MASTERLINE_API_URL", "http://staging:9000")
    monkeypatch.setenv("MASTERLINE_TOKEN", "mlt_secret-value")
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MASTERLINE_PORT", "8123")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///not-ours.db")  # no prefix: ignored
    s = Settings()
    assert s.resolved_database_url == "postgresql+psycopg://u@db.example/ml"
    assert s.sqlite_busy_timeout_ms == 2500
    assert s.api_url == "http://staging:9000"
    assert s.port == 8123
    assert s.data_dir == tmp_path
    assert s.token is not None and s.token.get_secret_value() == "mlt_secret-value"
    # The token never shows when settings are printed or logged.
    assert "mlt_secret-value" not in repr(s)
    assert "mlt_secret-value" not in str(s.model_dump())


def test_default_database_is_the_embedded_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MASTERLINE_DATABASE_URL", raising=False)
    monkeypatch.setenv("MASTERLINE_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'masterline.db'}"
    assert s.resolved_image_store_dir == tmp_path / "images"


def test_a_bad_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTERLINE_PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        Settings()
