"""POST /share/subgraphs/{department}/graphql: the Apollo Federation v2 subgraph protocol
(`_service`, `_entities`) on the share tier's identity, policies, audit and signature."""

from __future__ import annotations

from typing import Any

from tests.conftest import gql

SAMR_CREDIT_QUERY = "{ enterpriseRegistration(first: 2) { edges { node { creditCode legalRepIdNumber } } } }"
ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) {
  __typename ... on LegalEntity { creditCode taxCreditRating { rating taxPaidAmount } } } }"""


def sub(client: Any, dept: str, query: str, token: str | None, variables: dict | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(
        f"/share/subgraphs/{dept}/graphql", json={"query": query, "variables": variables}, headers=headers
    )


def _credit_codes(client: Any, token: str, n: int = 2) -> list[str]:
    body = gql(
        client,
        "share",
        f"{{ taxCreditRating(first: {n}) {{ edges {{ node {{ creditCode }} }} }} }}",
        token=token,
    )
    return [e["node"]["creditCode"] for e in body.json()["data"]["taxCreditRating"]["edges"]]


def test_service_sdl_is_the_federation_subgraph(client: Any, tokens: dict[str, str]) -> None:
    r = sub(client, "hrss", "{ _service { sdl } }", tokens["samr"])
    assert r.status_code == 200, r.text
    sdl = r.json()["data"]["_service"]["sdl"]
    assert sdl.startswith('extend schema @link(url: "https://specs.apollo.dev/federation/v2.')
    assert 'type Person @key(fields: "idNumber")' in sdl
    # hrss only links to LegalEntity (employer): a stub the router resolves elsewhere
    assert 'type LegalEntity @key(fields: "creditCode", resolvable: false)' in sdl
    assert "employer: LegalEntity" in sdl and "person(idNumber: String!): Person @shareable" in sdl
    assert "type PageInfo @shareable" in sdl
    assert "_entities" not in sdl and "_Service" not in sdl  # the router adds its own plumbing


def test_entities_apply_the_callers_policies(client: Any, tokens: dict[str, str]) -> None:
    codes = _credit_codes(client, tokens["tax"])
    reps = [{"__typename": "LegalEntity", "creditCode": c} for c in codes]
    as_tax = sub(client, "tax", ENTITIES, tokens["tax"], {"r": reps}).json()
    as_hrss = sub(client, "tax", ENTITIES, tokens["hrss"], {"r": reps}).json()
    assert "errors" not in as_tax, as_tax
    own = as_tax["data"]["_entities"]
    assert [e["creditCode"] for e in own] == codes and all(e["__typename"] == "LegalEntity" for e in own)
    shared = as_hrss["data"]["_entities"]
    # the provider reads the amount in clear; hrss gets the range bucket the share tier gives it
    direct = gql(
        client,
        "share",
        f'{{ legalEntity(creditCode: "{codes[0]}") {{ taxCreditRating {{ rating taxPaidAmount }} }} }}',
        token=tokens["hrss"],
    ).json()["data"]["legalEntity"]
    assert shared[0]["taxCreditRating"] == direct["taxCreditRating"]
    assert shared[0]["taxCreditRating"] != own[0]["taxCreditRating"]


def test_entities_refuse_unknown_representations(client: Any, tokens: dict[str, str]) -> None:
    reps = [{"__typename": "Person", "idNumber": "x"}, {"__typename": "Nope"}]
    body = sub(client, "tax", ENTITIES, tokens["tax"], {"r": reps}).json()
    assert body["data"]["_entities"] == [None, None]
    assert sorted(e["path"][1] for e in body["errors"]) == [0, 1]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}


def test_subgraph_needs_the_callers_own_share_token(client: Any, tokens: dict[str, str]) -> None:
    assert sub(client, "samr", "{ _service { sdl } }", None).status_code == 401
    assert sub(client, "samr", "{ _service { sdl } }", "not-a-token").status_code == 401
    assert sub(client, "nowhere", "{ _service { sdl } }", tokens["samr"]).status_code == 404
    r = sub(client, "samr", SAMR_CREDIT_QUERY, tokens["samr"])
    assert r.status_code == 200 and "errors" not in r.json()


def test_subgraph_answers_are_signed_and_audited(client: Any, tokens: dict[str, str]) -> None:
    r = sub(client, "samr", SAMR_CREDIT_QUERY, tokens["hrss"], None)
    assert r.status_code == 200
    assert r.headers["signature"] and "content-digest" in r.headers
    codes = {e["extensions"]["code"] for e in r.json()["errors"]}
    assert codes == {"FORBIDDEN_FIELD"}  # legalRepIdNumber, as on /share/graphql
    refused = sub(client, "samr", SAMR_CREDIT_QUERY, None)
    assert refused.status_code == 401 and refused.headers["signature"]
