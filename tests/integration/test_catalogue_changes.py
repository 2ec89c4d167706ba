"""Publishing or reclassifying a catalogue entry changes the served schema without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from catalogue import service
from gateway.db import create_engine
from policies.model import Level
from tests.conftest import gql


def _change(demo_env: Any, job: Any) -> None:
    async def go() -> None:
        engine = create_engine(demo_env.settings.database_url)
        try:
            await job(engine)
        finally:
            await engine.dispose()

    asyncio.run(go())


def _open_fields(client: Any, type_name: str) -> set[str] | None:
    t = gql(client, "open", f'{{ __type(name: "{type_name}") {{ fields {{ name }} }} }}').json()["data"][
        "__type"
    ]
    return None if t is None else {f["name"] for f in t["fields"]}


def test_unpublish_and_publish_rebuild_the_schema(client: Any, demo_env: Any) -> None:
    assert _open_fields(client, "DischargePermit")
    try:
        _change(demo_env, lambda e: service.set_published(e, "discharge_permit", False))
        assert _open_fields(client, "DischargePermit") is None
        r = gql(client, "open", "{ dischargePermit { totalCount } }")
        assert r.status_code == 400
    finally:
        _change(demo_env, lambda e: service.set_published(e, "discharge_permit", True))
    assert "permitNumber" in (_open_fields(client, "DischargePermit") or set())


def test_reclassifying_a_field_removes_it_from_the_open_schema(client: Any, demo_env: Any) -> None:
    assert "pm10" in (_open_fields(client, "AirQualityDaily") or set())
    try:
        _change(demo_env, lambda e: service.update_field(e, "air_quality_daily", "pm10", level=Level.L3))
        assert "pm10" not in (_open_fields(client, "AirQualityDaily") or set())
    finally:
        _change(demo_env, lambda e: service.update_field(e, "air_quality_daily", "pm10", level=Level.L1))
    assert "pm10" in (_open_fields(client, "AirQualityDaily") or set())
