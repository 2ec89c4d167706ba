"""Settings read from SHUQIAO_* variables: the database pool, the field limit."""

from __future__ import annotations

import pytest

from gateway.settings import Settings


def test_pool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHUQIAO_DB_POOL_SIZE", "24")
    monkeypatch.setenv("SHUQIAO_DB_POOL_TIMEOUT", "2.5")
    s = Settings.from_env()
    assert (s.db_pool_size, s.db_pool_timeout) == (24, 2.5)


def test_pool_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHUQIAO_DB_POOL_SIZE", raising=False)
    monkeypatch.delenv("SHUQIAO_DB_POOL_TIMEOUT", raising=False)
    s = Settings.from_env()
    assert (s.db_pool_size, s.db_pool_timeout) == (10, 10.0)


@pytest.mark.parametrize("size", ["0", "1"])
def test_a_pool_without_room_beside_the_audit_writer_is_refused(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    monkeypatch.setenv("SHUQIAO_DB_POOL_SIZE", size)
    with pytest.raises(ValueError, match="SHUQIAO_DB_POOL_SIZE must be at least 2"):
        Settings.from_env()


def test_field_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHUQIAO_MAX_FIELDS", raising=False)
    assert Settings.from_env().limits.max_fields == 2000
    monkeypatch.setenv("SHUQIAO_MAX_FIELDS", "150")
    assert Settings.from_env().limits.max_fields == 150


@pytest.mark.parametrize(
    ("variable", "attribute"),
    [("SHUQIAO_MAX_IN_LIST", "max_in_list"), ("SHUQIAO_MAX_STRING_OPERAND", "max_string_operand")],
)
def test_operand_limits_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, variable: str, attribute: str
) -> None:
    monkeypatch.delenv(variable, raising=False)
    assert getattr(Settings.from_env().limits, attribute) == 1000
    monkeypatch.setenv(variable, "7")
    assert getattr(Settings.from_env().limits, attribute) == 7
