"""SHUQIAO_WATERMARK: on (the default), an identified consumer's delivery carries marks; off, every
value is exactly as stored and the audit event records no watermark."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.settings import Settings
from tests.conftest import gql
from tests.watermark.test_delivery import Q, _stored, rows
from tests.watermark.test_trace import _last_event_detail


def test_the_setting_reads_on_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHUQIAO_WATERMARK", raising=False)
    assert Settings.from_env().watermark is True
    monkeypatch.setenv("SHUQIAO_WATERMARK", "off")
    assert Settings.from_env().watermark is False
    monkeypatch.setenv("SHUQIAO_WATERMARK", "on")
    assert Settings.from_env().watermark is True
    monkeypatch.setenv("SHUQIAO_WATERMARK", "maybe")
    with pytest.raises(ValueError, match="SHUQIAO_WATERMARK"):
        Settings.from_env()


@pytest.fixture(scope="module")
def unmarked(demo_env: Any) -> Iterator[TestClient]:
    from gateway.app import create_app

    with TestClient(create_app(demo_env.settings.with_(watermark=False))) as c:
        yield c


def _token(client: TestClient, demo_env: Any, dept: str) -> str:
    c = demo_env.credentials["clients"][dept]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _reads(demo_env: Any) -> list[dict[str, Any]]:
    """hrss's last event's reads of enterprise_registration."""
    reads = _last_event_detail(demo_env, "hrss")["reads"]
    return [r for r in reads if r["dataset"] == "enterprise_registration"]


def test_off_delivers_values_exactly_as_stored(unmarked: TestClient, demo_env: Any) -> None:
    stored = _stored(demo_env)
    delivered = rows(gql(unmarked, "share", Q, token=_token(unmarked, demo_env, "hrss")).json())
    values = [r for r in delivered if r["registeredCapital"] is not None]
    assert len(values) > 50
    for r in values:
        assert Decimal(r["registeredCapital"]) == stored[r["creditCode"]]
    read = _reads(demo_env)
    assert read and all("watermark" not in r for r in read)


def test_on_marks_the_same_delivery(client: Any, tokens: dict[str, str], demo_env: Any) -> None:
    stored = _stored(demo_env)
    delivered = rows(gql(client, "share", Q, token=tokens["hrss"]).json())
    deltas = [
        abs(Decimal(r["registeredCapital"]) - stored[r["creditCode"]])
        for r in delivered
        if r["registeredCapital"] is not None
    ]
    assert max(deltas) <= Decimal("0.01")
    assert sum(d != 0 for d in deltas) > 10  # about a quarter of the values move
    (read,) = _reads(demo_env)
    assert read["watermark"]["recipient"] == "hrss"
