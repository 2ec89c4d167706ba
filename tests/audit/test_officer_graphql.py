"""The officer GraphQL API (POST /audit/graphql) on SQLite and PostgreSQL: "every access to
population.idNumber by hrss" found through GraphQL with keyset paging; event detail with opened
variables; statistics; verify; acknowledging an alert (audited, comment sealed); 401 without a
token and 403 without audit:read before any GraphQL runs; every error carries extensions.code; and
every officer GraphQL call is itself an audit event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.audit.test_officer_api import POPULATION, officer  # noqa: F401  (the module fixture)
from tests.conftest import gql


def og(client: Any, token: str | None, query: str, variables: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/audit/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def data(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


EVENTS = """
query Find($f: EventFilter, $first: Int, $after: String) {
  events(filter: $f, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { seq requestId department tier status purposes grantIds hasVariables
                          variables fields { dataset field action grantId } reads { dataset rows } } }
  }
}"""


def test_every_access_to_population_id_number_by_hrss(
    client: Any,
    tokens: dict[str, str],
    officer: str,  # noqa: F811
) -> None:
    start = datetime.now(UTC).isoformat()
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        r = gql(
            client,
            "share",
            POPULATION,
            token=tokens["hrss"],
            variables={"first": i + 1},
            headers={"X-Request-ID": f"g-hrss-{tag}-{i}"},
        )
        assert r.status_code == 200, r.text
    gql(client, "share", POPULATION, token=tokens["samr"], headers={"X-Request-ID": f"g-samr-{tag}"})
    gql(client, "open", "{ enterpriseRegistration(first: 1) { totalCount } }")

    f = {"from": start, "department": "hrss", "field": "population.idNumber"}
    page1 = data(og(client, officer, EVENTS, {"f": f, "first": 2}))["events"]
    assert page1["totalCount"] == 3 and page1["pageInfo"]["hasNextPage"] is True
    page2 = data(og(client, officer, EVENTS, {"f": f, "first": 2, "after": page1["pageInfo"]["endCursor"]}))[
        "events"
    ]
    assert page2["pageInfo"]["hasNextPage"] is False
    nodes = [e["node"] for e in page1["edges"] + page2["edges"]]
    assert [n["requestId"] for n in nodes] == [f"g-hrss-{tag}-{i}" for i in (2, 1, 0)]  # newest first
    seqs = [n["seq"] for n in nodes]
    assert seqs == sorted(seqs, reverse=True)
    for n in nodes:
        assert n["department"] == "hrss" and n["tier"] == "share" and n["status"] == 200
        id_number = next(x for x in n["fields"] if x["field"] == "id_number")
        assert id_number["dataset"] == "population" and id_number["action"] in ("deny", "encrypt")
        assert n["purposes"] == ["社保待遇资格认证"] and n["grantIds"]
        assert n["hasVariables"] is True and n["variables"] is None  # opened only in the detail

    # same answer as the JSON search (both call gateway.audit.query.search)
    j = client.get("/audit/api/events", params=f, headers={"Authorization": f"Bearer {officer}"}).json()
    assert [e["seq"] for e in j["events"]] == seqs

    # decision filter, and status as an Int
    denied = data(
        og(
            client,
            officer,
            EVENTS,
            {"f": {"from": start, "dataset": "population", "decision": "deny", "department": "samr"}},
        )
    )
    assert [e["node"]["requestId"] for e in denied["events"]["edges"]] == [f"g-samr-{tag}"]
    bad_status = data(og(client, officer, EVENTS, {"f": {"from": start, "status": 418}}))
    assert bad_status["events"]["totalCount"] == 0

    # detail: field decisions, reads and the opened variables
    detail = data(
        og(
            client,
            officer,
            """query D($seq: Int!) { event(seq: $seq) {
        requestId variables variablesError queryDigest hash prevHash
        fields { dataset field action reason grantId } reads { dataset rows grantId purpose } } }""",
            {"seq": seqs[0]},
        )
    )["event"]
    assert detail["requestId"] == f"g-hrss-{tag}-2" and detail["variables"] == {"first": 3}
    assert detail["variablesError"] is None and detail["queryDigest"] and detail["hash"]
    assert {(x["dataset"], x["field"]) for x in detail["fields"]} >= {
        ("population", "id_number"),
        ("population", "name"),
    }
    read = next(x for x in detail["reads"] if x["dataset"] == "population")
    assert read["purpose"] == "社保待遇资格认证" and read["grantId"]
    assert data(og(client, officer, "{ event(seq: 999999999) { seq } }"))["event"] is None

    # the officer's GraphQL calls are audited, on the audit tier, with their query sealed
    audits = data(og(client, officer, EVENTS, {"f": {"from": start, "tier": "audit"}, "first": 100}))
    mine = [e["node"] for e in audits["events"]["edges"]]
    assert mine and all(n["department"] == "police" and n["tier"] == "audit" for n in mine)
    ops = client.get(
        "/audit/api/events",
        params={"from": start, "tier": "audit", "limit": 100},
        headers={"Authorization": f"Bearer {officer}"},
    ).json()["events"]
    assert {"graphql:Find", "graphql:D", "graphql:event"} <= {e["operation_name"] for e in ops}
    find = next(e for e in ops if e["operation_name"] == "graphql:Find")
    assert find["query_digest"] and find["reads"][0]["dataset"] == "audit_event"
    opened = data(
        og(client, officer, "query($s: Int!) { event(seq: $s) { variables } }", {"s": find["seq"]})
    )["event"]["variables"]
    assert "events(filter: $f" in opened["query"] and opened["variables"]["f"]["from"] == start


def test_stats_and_verify(client: Any, tokens: dict[str, str], officer: str) -> None:  # noqa: F811
    start = datetime.now(UTC).isoformat()
    gql(client, "share", POPULATION, token=tokens["samr"])
    gql(client, "share", POPULATION, token=tokens["hrss"])
    got = data(
        og(
            client,
            officer,
            """query($from: String) { stats(from: $from) {
        departments { department events rows refused }
        datasets { dataset eventsByDecision { decision events } deny: events(decision: "deny") }
        statuses { status events } } verify { ok eventsChecked firstBadSeq reason } }""",
            {"from": start},
        )
    )
    depts = {d["department"]: d for d in got["stats"]["departments"]}
    assert depts["samr"]["events"] >= 1 and depts["samr"]["refused"] >= 1
    assert depts["hrss"]["events"] >= 1 and depts["hrss"]["rows"] >= 1
    pop = next(d for d in got["stats"]["datasets"] if d["dataset"] == "population")
    assert pop["deny"] >= 1 and {x["decision"] for x in pop["eventsByDecision"]} >= {"allow", "deny"}
    assert sum(s["events"] for s in got["stats"]["statuses"]) >= 2
    # the same numbers as the JSON stats
    j = client.get(
        "/audit/api/stats", params={"from": start}, headers={"Authorization": f"Bearer {officer}"}
    ).json()
    samr = next(d for d in j["departments"] if d["department"] == "samr")
    assert samr["refused"] == depts["samr"]["refused"]
    assert got["verify"]["ok"] is True and got["verify"]["eventsChecked"] > 0
    assert got["verify"]["firstBadSeq"] is None


def test_officer_acknowledges_an_alert_through_graphql(
    client: Any,
    tokens: dict[str, str],
    demo_env: Any,
    officer: str,  # noqa: F811
) -> None:
    from tests.audit.chain_helpers import out_of_hours_evaluation

    with out_of_hours_evaluation(client, demo_env.settings.database_url):
        start = datetime.now(UTC).isoformat()
        read = gql(client, "share", POPULATION, token=tokens["hrss"], variables={"first": 2})
        assert read.status_code == 200
    listed = data(
        og(
            client,
            officer,
            """{ alerts(open: true, rule: "l4_out_of_hours") {
        id rule consumer seq detail acknowledgedAt } }""",
        )
    )["alerts"]
    mine = [a for a in listed if a["consumer"] == "hrss" and "population.id_number" in a["detail"]["fields"]]
    assert mine and all(a["acknowledgedAt"] is None for a in mine), listed
    alert_id = mine[0]["id"]
    ack = """mutation Ack($id: Int!, $c: String!) { acknowledgeAlert(id: $id, comment: $c) {
        id acknowledgedAt acknowledgedBy ackComment } }"""

    empty = og(client, officer, ack, {"id": alert_id, "c": "  "})
    assert empty.status_code == 200 and empty.json()["data"] is None
    assert empty.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    done = data(og(client, officer, ack, {"id": alert_id, "c": "核实：夜间批处理，已报备"}))
    done = done["acknowledgeAlert"]
    assert done["id"] == alert_id and done["ackComment"] == "核实：夜间批处理，已报备"
    assert done["acknowledgedAt"] and done["acknowledgedBy"].startswith("officer-")
    again = og(client, officer, ack, {"id": alert_id, "c": "again"}).json()
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    unknown = og(client, officer, ack, {"id": 999999999, "c": "x"}).json()
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    open_ids = [a["id"] for a in data(og(client, officer, "{ alerts(open: true) { id } }"))["alerts"]]
    acked = data(og(client, officer, "{ alerts(open: false) { id } }"))["alerts"]
    assert alert_id not in open_ids and alert_id in [a["id"] for a in acked]
    assert alert_id in [a["id"] for a in data(og(client, officer, "{ alerts { id } }"))["alerts"]]

    # the acknowledgement is an audit event (a mutation), its comment sealed in the variables
    ops = client.get(
        "/audit/api/events",
        params={"from": start, "tier": "audit", "limit": 100},
        headers={"Authorization": f"Bearer {officer}"},
    ).json()["events"]
    acks = [e for e in ops if e["operation_name"] == "graphql:Ack"]
    assert len(acks) == 4 and {e["operation_type"] for e in acks} == {"mutation"}
    assert sorted(c for e in acks for c in e["error_codes"]) == ["BAD_USER_INPUT", "CONFLICT", "NOT_FOUND"]
    ok = next(e for e in acks if not e["error_codes"])
    detail = data(og(client, officer, "query($s: Int!) { event(seq: $s) { variables } }", {"s": ok["seq"]}))[
        "event"
    ]["variables"]
    assert detail["comment"] == "核实：夜间批处理，已报备" and detail["id"] == alert_id


QUERY = "{ events(first: 1) { totalCount } }"


def test_401_and_403_before_any_graphql(client: Any, tokens: dict[str, str]) -> None:
    for token, status, code in (
        (None, 401, "UNAUTHENTICATED"),
        ("not-a-token", 401, "UNAUTHENTICATED"),
        (tokens["hrss"], 403, "FORBIDDEN"),
    ):
        # even a malformed body is refused for auth first: nothing is parsed or executed
        for body in ({"query": QUERY}, {"query": "{ nope"}, None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = client.post("/audit/graphql", json=body, headers=headers)
            assert r.status_code == status, r.text
            assert r.json()["errors"][0]["extensions"]["code"] == code
            assert "data" not in r.json()
            assert "www-authenticate" in r.headers
    assert 'scope="audit:read"' in og(client, tokens["hrss"], QUERY).headers["www-authenticate"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ events(first: 1) { nope } }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "{ events("}, "GRAPHQL_PARSE_FAILED"),
        ({"variables": {}}, "BAD_REQUEST"),
    ],
)
def test_request_errors_are_400_with_a_code(client: Any, officer: str, body: Any, code: str) -> None:  # noqa: F811
    r = client.post("/audit/graphql", json=body, headers={"Authorization": f"Bearer {officer}"})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == code


def test_bad_filters_and_cursors_are_bad_user_input(client: Any, officer: str) -> None:  # noqa: F811
    for variables in (
        {"f": {"from": "yesterday"}},
        {"f": {"decision": "maybe"}},
        {"after": "garbage"},
        {"first": 0},
    ):
        r = og(client, officer, EVENTS, variables)
        assert r.status_code == 200 and r.json()["data"] is None, r.text
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables
