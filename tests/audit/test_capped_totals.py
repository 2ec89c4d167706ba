"""Capped totals wherever officers search, on SQLite and PostgreSQL: past the cap (10,000; 3 here,
so that a few requests are enough) the JSON API says `total_exact: false`, the officers' GraphQL
`totalExact: false` and the CLI "3+ events match" (`total_exact` in --json), each with the cap as
the total; `exact=true`, `exact: true` and `--exact` count every match. The export's size check
counts only up to its own limit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.audit import query
from tests.audit.test_cli import _append, _run
from tests.audit.test_officer_api import POPULATION, api, officer  # noqa: F401  (the module fixture)
from tests.audit.test_officer_graphql import data, og
from tests.conftest import gql

COUNTED = """
query Find($f: EventFilter, $exact: Boolean! = false) {
  events(filter: $f, first: 2, exact: $exact) { totalCount totalExact edges { node { seq } } }
}"""


@pytest.fixture
def cap_of_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "TOTAL_CAP", 3)


def _five_reads(client: Any, tokens: dict[str, str]) -> str:
    """Five reads of population by hrss; the time before them."""
    start = datetime.now(UTC).isoformat()
    tag = uuid.uuid4().hex[:8]
    for i in range(5):
        r = gql(client, "share", POPULATION, token=tokens["hrss"], variables={"first": 1},
                headers={"X-Request-ID": f"cap-{tag}-{i}"})  # fmt: skip
        assert r.status_code == 200, r.text
    return start


def test_the_json_api_caps_the_total_unless_asked_for_the_exact_one(
    client: Any,
    tokens: dict[str, str],
    officer: str,  # noqa: F811
    cap_of_3: None,
) -> None:
    start = _five_reads(client, tokens)
    f = {"from": start, "department": "hrss", "dataset": "population"}
    capped = api(client, "events", officer, limit=2, **f).json()
    assert (capped["total"], capped["total_exact"], len(capped["events"])) == (3, False, 2)
    exact = api(client, "events", officer, limit=2, exact="true", **f).json()
    assert (exact["total"], exact["total_exact"]) == (5, True)
    none = api(client, "events", officer, **f, status="500").json()
    assert (none["total"], none["total_exact"]) == (0, True)  # within the cap: exact without asking
    bad = api(client, "events", officer, exact="perhaps")
    assert bad.status_code == 400 and "exact is true or false" in bad.text


def test_the_officers_graphql_caps_the_total_unless_asked_for_the_exact_one(
    client: Any,
    tokens: dict[str, str],
    officer: str,  # noqa: F811
    cap_of_3: None,
) -> None:
    start = _five_reads(client, tokens)
    f = {"from": start, "department": "hrss", "dataset": "population"}
    capped = data(og(client, officer, COUNTED, {"f": f}))["events"]
    assert (capped["totalCount"], capped["totalExact"], len(capped["edges"])) == (3, False, 2)
    exact = data(og(client, officer, COUNTED, {"f": f, "exact": True}))["events"]
    assert (exact["totalCount"], exact["totalExact"]) == (5, True)


def test_the_export_counts_up_to_its_limit_only(
    client: Any,
    tokens: dict[str, str],
    officer: str,  # noqa: F811
    cap_of_3: None,
) -> None:
    """The export's limit is its own (SHUQIAO_AUDIT_EXPORT_MAX_EVENTS), not the search's cap: five
    events over a cap of 3 still export when the limit allows them."""
    start = _five_reads(client, tokens)
    r = api(client, "export", officer, format="json", **{"from": start, "department": "hrss"})
    assert r.status_code == 200, r.text
    assert len(json.loads(r.content)["events"]) == 5


def test_the_cli_caps_the_total_unless_asked_for_the_exact_one(url: str, cap_of_3: None) -> None:
    _append(url, 5)  # make_event: every one reads ds1
    code, out = _run(url, "search", "--dataset", "ds1", "--limit", "2")
    assert code == 0 and out.splitlines()[-1].startswith("3+ events match"), out
    code, out = _run(url, "search", "--dataset", "ds1", "--json")
    assert code == 0 and (json.loads(out)["total"], json.loads(out)["total_exact"]) == (3, False)
    code, out = _run(url, "search", "--dataset", "ds1", "--json", "--exact")
    assert code == 0 and (json.loads(out)["total"], json.loads(out)["total_exact"]) == (5, True)
    code, out = _run(url, "search", "--dataset", "ds1", "--exact")
    assert code == 0 and out.splitlines()[-1] == "5 events match", out
