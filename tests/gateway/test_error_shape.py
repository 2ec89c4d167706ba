"""One error shape (gateway.problems), Datasette-style: every refusal of our own endpoints is
`{"errors": [{"message": str, "extensions": {"code": str}}]}` with a JSON media type. The two
protocol shapes are checked to stay theirs: RFC 6749 on /oauth/*, the health report on /readyz."""

from __future__ import annotations

from typing import Any

import pytest

# (method, path, headers, body): each is refused by the endpoint it names
REFUSALS = [
    ("POST", "/share/graphql", {}, {"query": "{ __typename }"}),  # no token
    ("POST", "/share/graphql", {"Authorization": "Bearer nope"}, {"query": "{ __typename }"}),
    ("POST", "/open/graphql", {}, {"query": "{"}),  # parse error: no data
    ("GET", "/share/subgraphs/samr.graphql", {}, None),
    ("GET", "/audit/api/events", {}, None),
    ("POST", "/audit/graphql", {"Authorization": "Bearer nope"}, {"query": "{ __typename }"}),
    ("GET", "/admin/identity/clients", {}, None),
    ("POST", "/admin/identity/users", {"Authorization": "Bearer x.y.z"}, {}),
    ("GET", "/no/such/path", {}, None),
    ("GET", "/explore/static/nothing.js", {}, None),
    ("GET", "/audit/static/nothing.js", {}, None),
    ("DELETE", "/healthz", {}, None),
    ("GET", "/kpi.json?department=tax", {}, None),  # one department needs a bearer
    ("GET", "/kpi.csv", {"Authorization": "Bearer nope"}, None),
    ("GET", "/kpi.json?since=soon", {}, None),
    ("GET", "/open/download/population.csv", {}, None),  # the portal (docs/portal.md)
    ("GET", "/open/download/air_quality_daily.csv?where={", {}, None),
    ("GET", "/catalog.xml", {}, None),
    ("GET", "/explore.json?sort=popularity", {}, None),
    (
        "OPTIONS",
        "/open/graphql",
        {"Origin": "https://x.example", "Access-Control-Request-Method": "PUT"},
        None,
    ),
]


def _is_problem(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"errors"} or len(body["errors"]) != 1:
        return False
    (error,) = body["errors"]
    return (
        isinstance(error.get("message"), str)
        and bool(error["message"])
        and isinstance(error.get("extensions", {}).get("code"), str)
    )


@pytest.mark.parametrize(("method", "path", "headers", "body"), REFUSALS)
def test_every_refusal_has_the_one_shape(
    client: Any, method: str, path: str, headers: dict[str, str], body: Any
) -> None:
    r = client.request(method, path, headers=headers, json=body)
    assert r.status_code >= 400, (path, r.status_code)
    media = r.headers["content-type"].split(";")[0]
    assert media in ("application/json", "application/graphql-response+json")
    assert _is_problem(r.json()), (path, r.text)


def test_unauthenticated_share_tier_code(client: Any) -> None:
    r = client.post("/share/graphql", json={"query": "{ __typename }"})
    assert r.status_code == 401 and r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_unknown_path_is_not_found(client: Any) -> None:
    r = client.get("/no/such/path")
    assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_ckan_keeps_its_envelope(client: Any) -> None:
    r = client.get("/api/3/action/package_show?id=nope")
    assert r.status_code == 404
    assert r.json()["success"] is False and r.json()["error"]["__type"] == "Not Found Error"


def test_oauth_keeps_rfc6749_errors(client: Any) -> None:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert r.status_code in (400, 401)
    assert set(r.json()) >= {"error"} and "errors" not in r.json()
