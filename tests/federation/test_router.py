"""A stock router (@apollo/gateway + @apollo/server, federation/router.mjs) in front of the
department subgraphs of one served gateway: cross-department queries give the same data,
masks, encryption and FORBIDDEN_FIELD errors as the gateway's own share tier, for each
caller; a router that does not forward the caller's token gets nothing the caller may not
read (DESIGN §8); a subgraph that is down costs only its own fields, within the timeout."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.crypto.encryption import decrypt_field
from tests.conftest import DemoEnv
from tests.federation.conftest import compose_for, post, router
from tests.support import free_port, on_db

COMPACT = re.compile(r"SM2-SM4-GCM\.[0-9a-f]{16}(\.[A-Za-z0-9_-]+){2}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")

LEGAL_ENTITY = """query($c: String!) { legalEntity(creditCode: $c) { creditCode
  enterpriseRegistration { name legalRepresentative legalRepIdNumber contactPhone registeredCapital
    legalRep { idNumber population { name birthDate } } }
  taxCreditRating { ratingYear rating taxPaidAmount }
  dischargePermit { permitNumber unitName validTo } } }"""
PERSON = """query($i: String!) { person(idNumber: $i) { idNumber
  population { name idNumber birthDate phone householdAddress }
  socialInsurance { insuranceType contributionBase employerName
    employer { creditCode enterpriseRegistration { name contactPhone } taxCreditRating { rating } } } } }"""
SOCIAL_INSURANCE = """{ socialInsurance(first: 5) { totalCount
  edges { cursor node { name idNumber contributionBase
    employer { creditCode enterpriseRegistration { name legalRepresentative contactPhone }
               taxCreditRating { rating taxPaidAmount } } } }
  pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture(scope="module")
def supergraph(gateway: str, tokens: dict[str, str], node_modules: Path) -> str:
    composed = compose_for(node_modules, gateway, tokens["hrss"])
    assert composed["errors"] == [] and composed["hints"] == []
    return composed["supergraphSdl"]


@pytest.fixture(scope="module")
def routed(supergraph: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The router as it should be: it forwards each caller's own token."""
    with router(supergraph, tmp_path_factory.mktemp("router")) as url:
        yield url


@pytest.fixture(scope="module")
def keys_of(gateway: str, tokens: dict[str, str]) -> dict[str, str]:
    """A credit code with records at samr, tax and eco, and a person insured at hrss."""
    def codes(root: str, token: str) -> list[str]:
        q = "{ %s(first: 100) { edges { node { creditCode } } } }" % root
        body = post(f"{gateway}/share/graphql", q, token).json()
        return [e["node"]["creditCode"] for e in body["data"][root]["edges"]]

    rated = set(codes("taxCreditRating", tokens["tax"]))
    insured = post(
        f"{gateway}/share/graphql", "{ socialInsurance(first: 1) { edges { node { idNumber } } } }", tokens["hrss"]
    ).json()
    return {
        "c": next(c for c in codes("dischargePermit", tokens["eco"]) if c in rated),
        "i": insured["data"]["socialInsurance"]["edges"][0]["node"]["idNumber"],
    }


def _hrss_private(demo_env: DemoEnv) -> str:
    from gateway.crypto.demo import setup_demo_keys

    keys = on_db(demo_env, lambda e: setup_demo_keys(e, demo_env.settings.var_dir))
    return Path(keys["hrss"]["private_key_file"]).read_text()


def _normal(body: dict[str, Any], private: str | None) -> tuple[Any, list[Any]]:
    """Data with each encryption envelope replaced by its plaintext (they are randomised per
    response), and errors as comparable tuples (a router drops `locations` and adds its own
    extensions: the message, path, code, reason and resource code are what a caller reads)."""

    def walk(value: Any, dataset: str | None, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k if isinstance(v, list) else dataset, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, dataset, key) for v in value]
        if isinstance(value, str) and COMPACT.fullmatch(value):
            assert private is not None and dataset and key, value
            return ("encrypted", decrypt_field(private, value, dataset, key))
        return value

    errors = sorted(
        (
            tuple(e.get("path") or ()),
            e["message"],
            e["extensions"]["code"],
            e["extensions"].get("reason"),
            e["extensions"].get("resourceCode"),
        )
        for e in body.get("errors", [])
    )
    return walk(body.get("data"), None, None), errors


def _has_envelope(body: Any) -> bool:
    return bool(COMPACT.search(str(body)))


@pytest.mark.parametrize("caller", ["hrss", "samr"])
@pytest.mark.parametrize("query", [LEGAL_ENTITY, PERSON, SOCIAL_INSURANCE], ids=["legalEntity", "person", "socialInsurance"])
def test_router_answers_as_the_share_tier(
    gateway: str,
    routed: str,
    tokens: dict[str, str],
    keys_of: dict[str, str],
    demo_env: DemoEnv,
    caller: str,
    query: str,
) -> None:
    variables = {k: v for k, v in keys_of.items() if f"${k}" in query}
    direct = post(f"{gateway}/share/graphql", query, tokens[caller], variables)
    via = post(routed, query, tokens[caller], variables)
    assert direct.status_code == 200 and via.status_code == 200, via.text
    private = _hrss_private(demo_env) if caller == "hrss" else None
    assert _normal(via.json(), private) == _normal(direct.json(), private)


def test_cross_department_answers_carry_policies(
    routed: str, tokens: dict[str, str], keys_of: dict[str, str]
) -> None:
    """What the equality above covers, spelled out: masks, encryption and FORBIDDEN_FIELD."""
    entity = post(routed, LEGAL_ENTITY, tokens["hrss"], {"c": keys_of["c"]}).json()
    registration = entity["data"]["legalEntity"]["enterpriseRegistration"][0]
    assert registration["legalRepIdNumber"] is None and registration["legalRep"] is None
    assert "*" in registration["contactPhone"]  # masked for hrss
    assert entity["data"]["legalEntity"]["dischargePermit"] and entity["data"]["legalEntity"]["taxCreditRating"]
    codes = {(e["path"][-1], e["extensions"]["code"]) for e in entity["errors"]}
    assert ("legalRepIdNumber", "FORBIDDEN_FIELD") in codes and ("legalRep", "FORBIDDEN_FIELD") in codes
    person = post(routed, PERSON, tokens["hrss"], {"i": keys_of["i"]}).json()
    assert _has_envelope(person["data"]["person"]["population"])  # ID numbers sealed to hrss's key
    employer = person["data"]["person"]["socialInsurance"][0]["employer"]
    assert employer["enterpriseRegistration"] and employer["taxCreditRating"]  # joined via samr and tax
    as_samr = post(routed, PERSON, tokens["samr"], {"i": keys_of["i"]}).json()
    assert as_samr["data"]["person"]["population"] is None  # no grant
    assert {e["extensions"]["code"] for e in as_samr["errors"]} == {"FORBIDDEN_FIELD"}
