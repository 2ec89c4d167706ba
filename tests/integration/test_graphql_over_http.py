"""GraphQL over HTTP, clause by clause, on both tiers.

The reference is the draft at https://graphql.github.io/graphql-over-http/draft/ (graphql/
graphql-over-http, spec/GraphQLOverHTTP.md as of August 2026); each test names the section and
quotes the requirement it checks. Where the draft says SHOULD and the gateway does otherwise, the
test says so and why (see the end of the module)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

GQL = "application/graphql-response+json"
JSON = "application/json"
Q = "{ __typename }"
TIERS = ("open", "share")


@pytest.fixture(scope="module")
def client(demo_env: Any) -> Iterator[Any]:
    """An app of this module's own, with an anonymous rate limit these many requests stay under."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(replace(demo_env.settings, anonymous_rate="100000/minute"))) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(client: Any, demo_env: Any) -> dict[str, str]:
    c = demo_env.credentials["clients"]["samr"]
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(c["client_id"], c["client_secret"])
    )
    assert r.status_code == 200, r.text
    return {"samr": r.json()["access_token"]}


@pytest.fixture(scope="module")
def post(client: Any, tokens: dict[str, str]) -> Any:
    """POST to a tier with its credentials (the share tier needs a bearer token)."""

    def send(
        tier: str, body: Any = None, *, accept: str | None = GQL, raw: bytes | None = None, **headers: str
    ) -> Any:
        h = {"Content-Type": JSON, **headers}
        if accept is not None:
            h["Accept"] = accept
        if tier == "share":
            h["Authorization"] = f"Bearer {tokens['samr']}"
        if raw is not None:
            return client.post(f"/{tier}/graphql", content=raw, headers=h)
        return client.post(f"/{tier}/graphql", json=body, headers=h)

    return send


def _media(r: Any) -> str:
    return r.headers["content-type"].split(";")[0].strip()


def _code(r: Any) -> str:
    return r.json()["errors"][0]["extensions"]["code"]


# -- Media Types


@pytest.mark.parametrize("tier", TIERS)
def test_media_types_utf8_assumed_and_accepted(post: Any, tier: str) -> None:
    """Media Types: "If the media type in a Content-Type or Accept header does not include encoding
    information … then utf-8 MUST be assumed". POST: "A server MUST support POST requests encoded
    with the application/json media type … encoded with UTF-8"."""
    r = post(tier, raw='{"query": "{ __typename }", "variables": {"x": "数桥"}}'.encode())
    assert r.status_code == 200 and r.json() == {"data": {"__typename": "Query"}}
    r = post(tier, {"query": Q}, **{"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200
    r = post(tier, {"query": Q}, **{"Content-Type": 'application/json; charset="UTF-8"'})
    assert r.status_code == 200


@pytest.mark.parametrize("tier", TIERS)
def test_body_content_type_names_the_media_type_and_encoding(post: Any, tier: str) -> None:
    """Body: "A server MUST indicate the media type of the response with a Content-Type header, and
    SHOULD indicate the encoding"; "A server MUST support responses using the
    application/graphql-response+json media type"."""
    r = post(tier, {"query": Q})
    assert r.status_code == 200 and r.headers["content-type"] == f"{GQL}; charset=utf-8"
    r.content.decode("utf-8")


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (GQL, GQL),
        (JSON, JSON),
        (f"{GQL}, {JSON};q=0.9", GQL),  # what the spec tells clients to send
        (f"{JSON}, {GQL};q=0.5", JSON),
        (f"{JSON};q=0.1, {GQL}", GQL),
        (f"{GQL};q=0, {JSON}", JSON),  # q=0: not acceptable
        ("*/*", JSON),
        ("application/*", GQL),
        (f"text/html, {JSON};q=0.8", JSON),
        (f"{GQL};charset=utf-16, {JSON}", JSON),  # responses are UTF-8 only
    ],
)
def test_body_accept_highest_priority_supported(post: Any, accept: str, media: str) -> None:
    """Body: "If an Accept header is provided, the server MUST respect the given Accept header and
    attempt to encode the response in the highest priority media type listed that is supported"."""
    r = post("open", {"query": Q}, accept=accept)
    assert r.status_code == 200 and _media(r) == media


@pytest.mark.parametrize("tier", TIERS)
def test_accept_missing_is_application_json(client: Any, post: Any, tier: str) -> None:
    """Accept (legacy): a request without Accept is treated as application/json (graphql-http
    audit 80D8: "SHOULD assume application/json content-type when accept is missing")."""
    r = post(tier, {"query": Q}, accept=None)
    assert r.status_code == 200 and _media(r) == JSON
    if tier == "open":
        r = client.get("/open/graphql", params={"query": Q})
        assert r.status_code == 200 and _media(r) == JSON


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml, text/plain;q=0.5", f"{JSON};charset=latin1"]
)
def test_body_406_when_nothing_acceptable(post: Any, tier: str, accept: str) -> None:
    """Body: "If the Accept header is present but does not indicate support for any of the server's
    supported media types or application/json, the server SHOULD respond with 406 Not Acceptable"."""
    r = post(tier, {"query": Q}, accept=accept)
    assert r.status_code == 406 and _code(r) == "NOT_ACCEPTABLE"


@pytest.mark.parametrize("tier", TIERS)
def test_legacy_client_gets_application_json_only_for_2xx(post: Any, tier: str) -> None:
    """Body (legacy client): "the request SHOULD be performed … as if the request had specified
    Accept: application/graphql-response+json, except any response that produces a 2xx status code
    should replace the Content-Type header with Content-Type: application/json"."""
    ok = post(tier, {"query": Q}, accept=JSON)
    assert ok.status_code == 200 and ok.headers["content-type"] == f"{JSON}; charset=utf-8"
    bad = post(tier, {"query": "{ nope }"}, accept=JSON)
    assert bad.status_code == 400 and _media(bad) == GQL and "data" not in bad.json()


# -- Request: methods


@pytest.mark.parametrize("tier", TIERS)
def test_request_post_is_accepted(post: Any, tier: str) -> None:
    """Request: "A server MUST accept POST requests"."""
    assert post(tier, {"query": Q}).status_code == 200


def test_get_query_parameters_in_the_url(client: Any) -> None:
    """GET: parameters "MUST be provided in the query component of the request URL, encoded in the
    application/x-www-form-urlencoded format"; {variables} and {extensions} "MUST be encoded as a
    JSON string"; "Specifying the empty string for optional request parameters is equivalent to not
    specifying them at all"."""
    q = "query T($name: String!) { __type(name: $name) { name } }"
    r = client.get(
        "/open/graphql",
        params={"query": q, "variables": '{"name": "Query"}', "extensions": '{"x": 1}'},
        headers={"Accept": GQL},
    )
    assert r.status_code == 200 and r.json()["data"]["__type"]["name"] == "Query"
    r = client.get(
        "/open/graphql", params={"query": Q, "variables": "", "operationName": "", "extensions": ""}
    )
    assert r.status_code == 200 and r.json() == {"data": {"__typename": "Query"}}
    r = client.get("/open/graphql", params={"query": "query null { __typename }", "operationName": "null"})
    assert r.status_code == 200  # "null" is an operation's name, not null


@pytest.mark.parametrize(
    ("query", "op"),
    [
        ("mutation { __typename }", None),
        ("# a comment first\nmutation M { __typename }", None),
        ("query Q { __typename } mutation M { __typename }", "M"),
        ("subscription { __typename }", None),
    ],
)
def test_get_never_runs_a_mutation(client: Any, query: str, op: str | None) -> None:
    """GET: "GET requests MUST NOT be used for executing mutation operations. If the values of {query}
    and {operationName} indicate that a mutation operation is to be executed, the server MUST
    respond with an appropriate 4xx status code and halt execution; status code 405 … is
    RECOMMENDED"; Status Codes: "when using status code 405 the Allow header MUST be specified"."""
    params = {"query": query, **({"operationName": op} if op else {})}
    r = client.get("/open/graphql", params=params, headers={"Accept": GQL})
    assert r.status_code == 405 and r.headers["allow"] == "POST" and _code(r) == "METHOD_NOT_ALLOWED"
    both = "query Q { __typename } mutation M { __typename }"
    r = client.get("/open/graphql", params={"query": both, "operationName": "Q"})
    # The query of the same document may use GET; this document fails validation (no mutations here)
    assert r.status_code == 400 and _code(r) == "GRAPHQL_VALIDATION_FAILED"


@pytest.mark.parametrize(
    ("tier", "method", "allow"),
    [
        ("open", "PUT", "GET, POST"),
        ("open", "PATCH", "GET, POST"),
        ("share", "GET", "POST"),
        ("share", "DELETE", "POST"),
        ("share", "PATCH", "POST"),
    ],
)
def test_unsupported_method_is_405_with_allow(client: Any, tier: str, method: str, allow: str) -> None:
    """Status Codes: "If the request uses an unsupported HTTP method, status code 405 SHOULD be used"
    and "the Allow header MUST be specified". (The share tier takes POST only: its requests carry
    signatures over the body and are never cached.)"""
    r = client.request(method, f"/{tier}/graphql", params={"query": Q}, headers={"Accept": GQL})
    assert r.status_code == 405 and r.headers["allow"] == allow


# -- Request: POST bodies


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"]
)
def test_post_content_type(
    post: Any, client: Any, tokens: dict[str, str], tier: str, ctype: str | None
) -> None:
    """POST: "If the client does not supply a Content-Type header with a POST request, the server
    SHOULD reject the request using the appropriate 4xx status code"; Status Codes: "If the
    Content-Type of the request is not supported, status code 415 SHOULD be used"."""
    headers = {"Accept": GQL}
    if tier == "share":
        headers["Authorization"] = f"Bearer {tokens['samr']}"
    if ctype is not None:
        headers["Content-Type"] = ctype
    r = client.post(f"/{tier}/graphql", content=b'{"query": "{ __typename }"}', headers=headers)
    assert r.status_code == 415 and _code(r) == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("raw", [b"", b"NONSENSE", b'{"query":', b"\xff\xfe{}"])
def test_json_parse_failure_is_400(post: Any, tier: str, raw: bytes) -> None:
    """Status Codes: "If the JSON body of the request could not be parsed, status code 400 SHOULD be
    used" (an empty body too: "The request MUST have a body")."""
    r = post(tier, raw=raw)
    assert r.status_code == 400 and _code(r) == "BAD_REQUEST" and "data" not in r.json()


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("accept", [GQL, JSON])
@pytest.mark.parametrize(
    "body",
    [
        {"qeury": Q},
        {"query": None},
        {"query": {"obj": "ect"}},
        {"query": 0},
        {"query": False},
        {"query": ["array"]},
        {"query": Q, "operationName": {"obj": "ect"}},
        {"query": Q, "operationName": 0},
        {"query": Q, "operationName": False},
        {"query": Q, "operationName": ["array"]},
        {"query": Q, "variables": "string"},
        {"query": Q, "variables": 0},
        {"query": Q, "variables": False},
        {"query": Q, "variables": ["array"]},
        {"query": Q, "extensions": "string"},
        {"query": Q, "extensions": 0},
        {"query": Q, "extensions": False},
        {"query": Q, "extensions": ["array"]},
        "just a string",
    ],
)
def test_parameters_of_the_wrong_type_are_refused(post: Any, tier: str, accept: str, body: Any) -> None:
    """Request Parameters / JSON Encoding: {query} is a required string, {operationName} an optional
    string, {variables} and {extensions} optional maps; "A request that does not constitute a
    well-formed GraphQL-over-HTTP request SHOULD result in status code 422" — answered 400 here
    (see DEVIATIONS), with no `data`, under either media type (no data → MUST be 4xx/5xx)."""
    r = post(tier, body, accept=accept)
    assert r.status_code == 400 and _code(r) == "BAD_REQUEST" and "data" not in r.json()
    assert _media(r) == GQL


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("param", ["variables", "operationName", "extensions"])
def test_null_optional_parameters_are_absent(post: Any, tier: str, param: str) -> None:
    """JSON Encoding: "Specifying null for optional request parameters is equivalent to not
    specifying them at all"."""
    r = post(tier, {"query": Q, param: None})
    assert r.status_code == 200 and r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("tier", TIERS)
def test_maps_and_unknown_members(post: Any, tier: str) -> None:
    """JSON Encoding: {variables} and {extensions} are maps; "Servers receiving a request with
    additional properties MUST ignore properties they do not understand"."""
    body = {
        "query": "query T($name: String!) { __type(name: $name) { name } }",
        "variables": {"name": "Query"},
        "extensions": {"some": "value"},
        "futureMember": [1, 2],
    }
    r = post(tier, body)
    assert r.status_code == 200 and r.json() == {"data": {"__type": {"name": "Query"}}}
    r = post(tier, {"query": "query Q { __typename }", "operationName": "Q"})
    assert r.status_code == 200 and "errors" not in r.json()


def test_get_json_parameters_must_be_objects(client: Any) -> None:
    """GET: {variables} and {extensions} "MUST be encoded as a JSON string" — of a map."""
    for param, value in (
        ("variables", "[7]"),
        ("variables", "not json"),
        ("extensions", '"x"'),
        ("extensions", "{"),
    ):
        r = client.get("/open/graphql", params={"query": Q, param: value}, headers={"Accept": GQL})
        assert r.status_code == 400 and _code(r) == "BAD_REQUEST", (param, value)
    r = client.get("/open/graphql", params={"operationName": "Q"}, headers={"Accept": GQL})
    assert r.status_code == 400  # {query} is required


# -- Status codes of GraphQL errors


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("accept", [GQL, JSON])
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ f8f31403dfe404bccbb0e835f2629c6a7 }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "query A { __typename } query B { __typename }"}, "BAD_USER_INPUT"),
        ({"query": Q, "operationName": "Nope"}, "BAD_USER_INPUT"),
        (
            {"query": "query($n: Boolean!) { __typename @include(if: $n) }", "variables": {"n": "x"}},
            "BAD_USER_INPUT",
        ),
        ({"query": "query($n: Boolean!) { __typename @include(if: $n) }"}, "BAD_USER_INPUT"),
    ],
)
def test_request_errors_have_no_data_and_a_4xx(
    post: Any, tier: str, accept: str, body: Any, code: str
) -> None:
    """Status Codes: "If the GraphQL response does not contain the {data} entry then the server MUST
    reply with an appropriate 4xx or 5xx status code": document parsing failure (400 SHOULD),
    validation failure, undetermined operation and variable coercion failure (422 SHOULD; 400
    here, see DEVIATIONS) — under application/json as well (the legacy rule above)."""
    r = post(tier, body, accept=accept)
    assert r.status_code == 400 and _code(r) == code and "data" not in r.json()
    assert _media(r) == GQL


@pytest.mark.parametrize("accept", [GQL, JSON])
def test_data_present_is_2xx_even_with_field_errors(client: Any, tokens: dict[str, str], accept: str) -> None:
    """Status Codes: "If the GraphQL response contains the {data} entry and it is not {null}, then the
    server MUST reply with a 2xx status code" — a field the caller may not read is a field error
    (FORBIDDEN_FIELD) in a response that still has data."""
    q = "{ socialInsurance(first: 1) { edges { node { idNumber } } } }"
    r = client.post(
        "/share/graphql",
        json={"query": q},
        headers={"Accept": accept, "Authorization": f"Bearer {tokens['samr']}"},
    )
    body = r.json()
    assert "data" in body and body["data"] is not None
    assert r.status_code == 200 and _media(r) == accept
    assert body.get("errors")  # a partial answer


@pytest.mark.parametrize("tier", TIERS)
def test_not_permitted_is_401(client: Any, tier: str) -> None:
    """Status Codes: "If the client is not permitted to issue the GraphQL request, then the server
    SHOULD reply with 401, 403 or similar"."""
    headers = (
        {"Accept": GQL, "Authorization": "Bearer nope"}
        if tier == "share"
        else {"Accept": GQL, "X-API-Key": "sq_0_nope"}
    )
    r = client.post(f"/{tier}/graphql", json={"query": Q}, headers=headers)
    assert r.status_code == 401 and "data" not in r.json() and _media(r) == GQL


@pytest.mark.parametrize("tier", TIERS)
def test_body_too_large_is_413(post: Any, tier: str) -> None:
    """Status Codes: "If the size of the POST request body was too large, status code 413 SHOULD be
    used"."""
    r = post(tier, raw=b'{"query": "' + b" " * 70_000 + b'{ __typename }"}')
    assert r.status_code == 413 and _code(r) == "PAYLOAD_TOO_LARGE"


# DEVIATIONS (SHOULDs of the August 2026 draft the gateway does not follow, and why)
# - 422 for a request that is not well-formed, fails validation, names no single operation or whose
#   variables do not coerce: the gateway answers 400, as the draft did until 2026 and as the
#   reference audit (graphql-http's serverAudits: 6610, 4F5x, 69Bx, 904x, 17C5, 74FF) still
#   expects; the code in `extensions.code` tells the cases apart.
# - 294 for a response with both data and errors: 200 (294 is not a registered status code and
#   the draft itself recommends it only as a non-normative note); `errors` says it is partial.


@pytest.mark.parametrize(("tier", "method"), [("open", "PATCH"), ("share", "PATCH"), ("open", "OPTIONS")])
def test_any_method_reaches_the_endpoint_and_is_recorded(
    client: Any, demo_env: Any, tier: str, method: str
) -> None:
    """The router used to list four methods and answer any other (PATCH, a bare OPTIONS) with a 405
    of its own: no error code, no audit event. Every method now reaches the endpoint."""
    import secrets

    from sqlalchemy import select

    from gateway.audit.models import AuditEvent
    from tests.support import on_db

    rid = f"{method.lower()}-{secrets.token_hex(6)}"
    r = client.request(method, f"/{tier}/graphql", params={"query": Q}, headers={"X-Request-ID": rid})
    assert r.status_code == 405 and _code(r) == "METHOD_NOT_ALLOWED"

    async def go(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            q = select(AuditEvent.status, AuditEvent.tier).where(AuditEvent.request_id == rid)
            return [tuple(row) for row in (await conn.execute(q)).all()]

    assert on_db(demo_env, go) == [(405, tier)]
