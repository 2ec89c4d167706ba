"""The issue's acceptance scenarios, through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.conftest import gql

ER_FIELDS = "creditCode name legalRepresentative registeredCapital establishmentDate district status"


def _codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_open_tier_serves_enterprise_registrations_anonymously(client: Any) -> None:
    r = gql(
        client,
        "open",
        f"{{ enterpriseRegistration(first: 5) {{ totalCount edges {{ node {{ {ER_FIELDS} }} }} }} }}",
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/graphql-response+json")
    conn = r.json()["data"]["enterpriseRegistration"]
    assert conn["totalCount"] > 5 and len(conn["edges"]) == 5
    node = conn["edges"][0]["node"]
    assert re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", node["creditCode"])
    assert node["legalRepresentative"]  # personal, but open by law


def test_open_schema_has_no_restricted_fields_even_in_introspection(client: Any) -> None:
    r = gql(client, "open", '{ __type(name: "EnterpriseRegistration") { fields { name } } }')
    names = {f["name"] for f in r.json()["data"]["__type"]["fields"]}
    assert {"creditCode", "legalRepresentative"} <= names
    assert not names & {"legalRepIdNumber", "contactPhone"}
    full = gql(client, "open", "{ __schema { types { name fields { name } inputFields { name } } } }").text
    for secret in ("legalRepIdNumber", "contactPhone", "idNumber", "Population", "SocialInsurance", "person"):
        assert secret not in full
    asked = gql(client, "open", "{ enterpriseRegistration { edges { node { contactPhone } } } }")
    assert asked.status_code == 400 and _codes(asked.json()) == ["GRAPHQL_VALIDATION_FAILED"]


def test_conditionally_open_dataset_needs_a_granted_api_key(client: Any, demo_env: Any) -> None:
    q = "{ taxCreditRating(first: 2) { edges { node { creditCode rating } } } }"
    anon = gql(client, "open", q).json()
    assert anon["data"]["taxCreditRating"] is None
    assert _codes(anon) == ["FORBIDDEN"] and "610000-TAX" in anon["errors"][0]["extensions"]["resourceCode"]
    assert "Apply" in anon["errors"][0]["message"]
    key = demo_env.credentials["api_keys"]["demo-bank"]
    granted = gql(client, "open", q, headers={"X-API-Key": key}).json()
    assert "errors" not in granted and len(granted["data"]["taxCreditRating"]["edges"]) == 2


def test_samr_sees_population_denied_field_by_field(client: Any, tokens: dict[str, str]) -> None:
    body = gql(
        client,
        "share",
        "{ population(first: 3) { edges { node { idNumber name birthDate } } } }",
        token=tokens["samr"],
    ).json()
    assert body["data"]["population"] is None
    assert _codes(body) == ["FORBIDDEN_FIELD"] * 3
    assert {e["message"].split()[2] for e in body["errors"]} == {"idNumber", "name", "birthDate"}
    for e in body["errors"]:
        assert e["path"] == ["population"]
        assert e["extensions"]["resourceCode"].startswith("610000-")
        assert e["extensions"]["reason"]


def test_hrss_reads_population_per_its_grant(client: Any, tokens: dict[str, str], demo_env: Any) -> None:
    from gateway.crypto.demo import setup_demo_keys
    from gateway.crypto.encryption import decrypt_field
    from gateway.identifiers import is_valid_id_number
    from tests.crypto.conftest import on_db

    # hrss's demo key pair (idempotent: the demo setup registers it too)
    hrss = on_db(demo_env, lambda e: setup_demo_keys(e, demo_env.settings.var_dir))["hrss"]
    private = Path(hrss["private_key_file"]).read_text()
    body = gql(
        client,
        "share",
        "{ population(first: 4) { edges { node { name birthDate idNumber gender } } } }",
        token=tokens["hrss"],
    ).json()
    nodes = [e["node"] for e in body["data"]["population"]["edges"]]
    assert len(nodes) == 4
    for n in nodes:
        assert n["name"] and "*" not in n["name"]  # granted in clear
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", n["birthDate"])
        # L4: delivered only encrypted to hrss's registered SM2 key, and only hrss can open it
        assert n["idNumber"].startswith(f"SM2-SM4-GCM.{hrss['kid']}.")
        assert is_valid_id_number(decrypt_field(private, n["idNumber"], "population", "idNumber"))
        assert n["gender"] is None  # outside the grant
    denied = {(e["path"][-1], e["path"][2]) for e in body["errors"]}
    assert denied == {("gender", i) for i in range(4)}
    assert set(_codes(body)) == {"FORBIDDEN_FIELD"}


def test_contact_phone_masked_to_others_and_clear_to_provider(client: Any, tokens: dict[str, str]) -> None:
    q = (
        "{ enterpriseRegistration(first: 3, orderBy: [{field: CREDIT_CODE}]) "
        "{ edges { node { creditCode contactPhone } } } }"
    )
    clear = gql(client, "share", q, token=tokens["samr"]).json()["data"]["enterpriseRegistration"]["edges"]
    masked = gql(client, "share", q, token=tokens["tax"]).json()["data"]["enterpriseRegistration"]["edges"]
    for c, m in zip(clear, masked, strict=True):
        assert c["node"]["creditCode"] == m["node"]["creditCode"]
        assert re.fullmatch(r"1\d{10}", c["node"]["contactPhone"])
        phone = c["node"]["contactPhone"]
        assert m["node"]["contactPhone"] == f"{phone[:3]}****{phone[-4:]}"


def test_keyset_pagination_walks_every_row_once(client: Any, tokens: dict[str, str]) -> None:
    q = """query($after: String) { airQualityDaily(first: 97, after: $after,
             where: {city: {eq: "西安市"}}, orderBy: [{field: AQI, direction: DESC}]) {
             totalCount edges { node { date aqi } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        r = gql(client, "share", q, token=tokens["eco"], variables={"after": after}).json()
        assert "errors" not in r, r
        page = r["data"]["airQualityDaily"]
        seen += [(e["node"]["date"], e["node"]["aqi"]) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == page["totalCount"] == len(set(seen)) > 97
    aqis = [a for _, a in seen]
    assert aqis == sorted(aqis, reverse=True)


def test_legal_entity_joins_datasets_of_several_departments(client: Any, tokens: dict[str, str]) -> None:
    first = gql(
        client,
        "share",
        "{ discharge_permit: dischargePermit(first: 1) { edges { node { creditCode } } } }",
        token=tokens["tax"],
    ).json()
    code = first["data"]["discharge_permit"]["edges"][0]["node"]["creditCode"]
    q = """query($c: String!) { legalEntity(creditCode: $c) { creditCode
             enterpriseRegistration { name contactPhone } dischargePermit { permitNumber }
             taxCreditRating { rating taxPaidAmount } } }"""
    ent = gql(client, "share", q, token=tokens["tax"], variables={"c": code}).json()
    assert "errors" not in ent, ent
    le = ent["data"]["legalEntity"]
    assert le["creditCode"] == code
    assert (
        len(le["enterpriseRegistration"]) == 1 and "****" in le["enterpriseRegistration"][0]["contactPhone"]
    )
    assert le["dischargePermit"]
    for t in le["taxCreditRating"]:  # tax reads its own amounts in clear
        assert re.fullmatch(r"\d+(\.\d+)?", t["taxPaidAmount"])


def test_link_from_social_insurance_to_employer(client: Any, tokens: dict[str, str]) -> None:
    q = (
        "{ socialInsurance(first: 5) { edges { node { employerCreditCode "
        "employer { creditCode enterpriseRegistration { name } } } } } }"
    )
    body = gql(client, "share", q, token=tokens["hrss"]).json()
    assert "errors" not in body, body
    for e in body["data"]["socialInsurance"]["edges"]:
        n = e["node"]
        assert n["employer"]["creditCode"] == n["employerCreditCode"]
        assert n["employer"]["enterpriseRegistration"][0]["name"]


def test_filtering_on_a_masked_field_is_refused(client: Any, tokens: dict[str, str]) -> None:
    q = '{ enterpriseRegistration(where: {contactPhone: {prefix: "138"}}) { totalCount } }'
    r = gql(client, "share", q, token=tokens["tax"])
    assert r.status_code == 400 and _codes(r.json()) == ["FORBIDDEN_FILTER"]
    ok = gql(client, "share", q, token=tokens["samr"]).json()
    assert ok["data"]["enterpriseRegistration"]["totalCount"] >= 0


def test_department_subgraph_is_federation_v2_and_private_to_its_provider(
    client: Any, tokens: dict[str, str]
) -> None:
    r = client.get("/share/subgraphs/samr.graphql", headers={"Authorization": f"Bearer {tokens['samr']}"})
    assert r.status_code == 200, r.text
    sdl = r.text
    assert "specs.apollo.dev/federation/v2" in sdl
    assert 'type LegalEntity @key(fields: "creditCode")' in sdl
    assert "enterpriseRegistration(" in sdl and "legalRepIdNumber" in sdl  # the provider's full view
    assert "population(" not in sdl  # another department's dataset
    other = client.get("/share/subgraphs/samr.graphql", headers={"Authorization": f"Bearer {tokens['tax']}"})
    assert other.status_code == 403
    assert client.get("/share/subgraphs/samr.graphql").status_code == 401
