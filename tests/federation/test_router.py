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
    with router(supergraph, tmp_path_factory.mktemp("router"), "--name", "province-router") as url:
        yield url


@pytest.fixture(scope="module")
def keys_of(gateway: str, tokens: dict[str, str]) -> dict[str, str]:
    """A credit code with records at samr, tax and eco, and a person insured at hrss."""

    def codes(root: str, token: str) -> list[str]:
        q = f"{{ {root}(first: 100) {{ edges {{ node {{ creditCode }} }} }} }}"
        body = post(f"{gateway}/share/graphql", q, token).json()
        return [e["node"]["creditCode"] for e in body["data"][root]["edges"]]

    rated = set(codes("taxCreditRating", tokens["tax"]))
    insured = post(
        f"{gateway}/share/graphql",
        "{ socialInsurance(first: 1) { edges { node { idNumber } } } }",
        tokens["hrss"],
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
            if private is None:  # a key the test does not hold (another test gave one): whose key
                return ("encrypted to", value.split(".")[1])
            assert dataset and key, value
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
@pytest.mark.parametrize(
    "query", [LEGAL_ENTITY, PERSON, SOCIAL_INSURANCE], ids=["legalEntity", "person", "socialInsurance"]
)
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
    assert (
        entity["data"]["legalEntity"]["dischargePermit"] and entity["data"]["legalEntity"]["taxCreditRating"]
    )
    codes = {(e["path"][-1], e["extensions"]["code"]) for e in entity["errors"]}
    assert ("legalRepIdNumber", "FORBIDDEN_FIELD") in codes and ("legalRep", "FORBIDDEN_FIELD") in codes
    person = post(routed, PERSON, tokens["hrss"], {"i": keys_of["i"]}).json()
    assert _has_envelope(person["data"]["person"]["population"])  # ID numbers sealed to hrss's key
    employer = person["data"]["person"]["socialInsurance"][0]["employer"]
    assert employer["enterpriseRegistration"] and employer["taxCreditRating"]  # joined via samr and tax
    as_samr = post(routed, PERSON, tokens["samr"], {"i": keys_of["i"]}).json()
    assert as_samr["data"]["person"]["population"] is None  # no grant
    assert {e["extensions"]["code"] for e in as_samr["errors"]} == {"FORBIDDEN_FIELD"}


# ---------------------------------------------------------------- the router cannot widen access


@pytest.fixture(scope="module")
def secrets_in_clear(gateway: str, tokens: dict[str, str], keys_of: dict[str, str]) -> list[str]:
    """Values only their providers read in clear: none may reach a caller through a router
    that does not carry that caller's own token."""
    own = post(f"{gateway}/share/graphql", LEGAL_ENTITY, tokens["samr"], {"c": keys_of["c"]}).json()
    reg = own["data"]["legalEntity"]["enterpriseRegistration"][0]
    tax = post(f"{gateway}/share/graphql", LEGAL_ENTITY, tokens["tax"], {"c": keys_of["c"]}).json()
    paid = tax["data"]["legalEntity"]["taxCreditRating"][0]["taxPaidAmount"]
    police = post(f"{gateway}/share/graphql", PERSON, tokens["police"], {"i": keys_of["i"]}).json()
    pop = police["data"]["person"]["population"][0]
    values = [reg["legalRepIdNumber"], reg["contactPhone"], paid, pop["phone"], pop["householdAddress"]]
    assert all(isinstance(v, str) and v and "*" not in v for v in values), values
    return values


def _leaks(body: Any, secrets: list[str]) -> list[str]:
    text = str(body)
    return [s for s in secrets if s in text]


def _router_own_token(demo_env: DemoEnv, gateway: str) -> str:
    """A client registered for the router itself, with the admin scope (what an operator might
    give "infrastructure"): it can read every SDL, and must read no data."""
    from gateway.identity.clients import create_client
    from gateway.secrets import SecretHasher, load_master_key

    hasher = SecretHasher(load_master_key(demo_env.settings.master_key_file))
    cid = f"router-{free_port()}"
    _, secret = on_db(demo_env, lambda e: create_client(e, hasher, "tax", client_id=cid, scopes=["admin"]))
    r = httpx.post(
        f"{gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cid, secret or ""),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_router_without_the_callers_token_gets_nothing(
    supergraph: str,
    tmp_path: Path,
    tokens: dict[str, str],
    keys_of: dict[str, str],
    secrets_in_clear: list[str],
) -> None:
    with router(supergraph, tmp_path, "--credentials", "none") as url:
        for query, variables in ((LEGAL_ENTITY, {"c": keys_of["c"]}), (PERSON, {"i": keys_of["i"]})):
            body = post(url, query, tokens["samr"], variables).json()
            assert not _leaks(body, secrets_in_clear)
            assert list(body["data"].values()) == [None]
            assert "UNAUTHENTICATED" in {e["extensions"]["code"] for e in body["errors"]}


def test_router_with_its_own_credentials_gets_nothing(
    supergraph: str,
    tmp_path: Path,
    gateway: str,
    demo_env: DemoEnv,
    tokens: dict[str, str],
    keys_of: dict[str, str],
    secrets_in_clear: list[str],
) -> None:
    own = _router_own_token(demo_env, gateway)
    assert (
        httpx.get(  # the same token reads the provider's SDL: it is a working credential
            f"{gateway}/share/subgraphs/samr.graphql", headers={"Authorization": f"Bearer {own}"}, timeout=30
        ).status_code
        == 200
    )
    with router(
        supergraph, tmp_path, "--inject-token", own, "--header", "X-Shuqiao-On-Behalf-Of: samr"
    ) as url:
        body = post(url, LEGAL_ENTITY, tokens["samr"], {"c": keys_of["c"]}).json()
    assert not _leaks(body, secrets_in_clear)
    assert body["data"]["legalEntity"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} <= {"UNAUTHENTICATED", "FORBIDDEN"}


def test_router_with_a_departments_token_gets_only_that_departments_view(
    supergraph: str,
    tmp_path: Path,
    gateway: str,
    tokens: dict[str, str],
    keys_of: dict[str, str],
    secrets_in_clear: list[str],
) -> None:
    """A router that injects eco's token (ignoring its caller, samr) and claims to act for samr:
    the subgraphs answer eco, never samr: samr's own fields stay masked or denied."""
    claims = ("--header", "X-Shuqiao-On-Behalf-Of: samr", "--header", "X-Shuqiao-Consumer: samr")
    with router(supergraph, tmp_path, "--inject-token", tokens["eco"], *claims) as url:
        for query, variables in ((LEGAL_ENTITY, {"c": keys_of["c"]}), (PERSON, {"i": keys_of["i"]})):
            body = post(url, query, tokens["samr"], variables).json()
            assert not _leaks(body, secrets_in_clear)
            as_eco = post(f"{gateway}/share/graphql", query, tokens["eco"], variables).json()
            assert _normal(body, None) == _normal(as_eco, None)


def test_subgraph_events_name_the_caller_and_the_router(
    routed: str, demo_env: DemoEnv, tokens: dict[str, str], keys_of: dict[str, str]
) -> None:
    import orjson
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent

    post(routed, LEGAL_ENTITY, tokens["hrss"], {"c": keys_of["c"]})

    async def events(engine: Any) -> list[Any]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(50))
            return list(rows)

    def routed_events() -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for e in on_db(demo_env, events):
            for r in orjson.loads(e.detail)["reads"]:
                if (
                    "subgraph" in r
                    and r["subgraph"].get("router") == "province-router"
                    and e.consumer == "hrss"
                ):
                    out.append((e, r["subgraph"]))
        return out

    mine = routed_events()
    for _ in range(50):  # committed before the answer left, but the router answers after the last
        if {"samr", "tax", "eco"} <= {claim["department"] for _, claim in mine}:
            break
        time.sleep(0.1)
        mine = routed_events()
    assert {"samr", "tax", "eco"} <= {claim["department"] for _, claim in mine}
    for e, _ in mine:
        # the principal is the caller whose token the router forwarded; the router is the actor
        assert e.principal_id == "demo-hrss" and e.principal_kind == "department" and e.consumer == "hrss"


def test_a_subgraph_that_is_down_costs_only_its_own_fields(
    gateway: str, tokens: dict[str, str], node_modules: Path, tmp_path: Path, keys_of: dict[str, str]
) -> None:
    """tax's subgraph on a port where nothing listens, police's on one that accepts and never
    answers: the router answers samr's and eco's parts, with errors at the paths tax and
    police would have filled, within its timeout (1.5 s per subgraph fetch)."""
    dead = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        urls = {
            "tax": f"http://127.0.0.1:{dead}/share/subgraphs/tax/graphql",
            "police": f"http://127.0.0.1:{silent.getsockname()[1]}/share/subgraphs/police/graphql",
        }
        composed = compose_for(node_modules, gateway, tokens["samr"], urls)
        with router(composed["supergraphSdl"], tmp_path, "--timeout-ms", "1500") as url:
            r = httpx.post(
                url,
                json={"query": LEGAL_ENTITY, "variables": {"c": keys_of["c"]}},
                headers={"Authorization": f"Bearer {tokens['samr']}"},
                timeout=15,  # the router's own deadline is 1.5 s per subgraph fetch
            )
    finally:
        silent.close()
    assert r.status_code == 200, r.text
    body = r.json()
    entity = body["data"]["legalEntity"]
    registration = entity["enterpriseRegistration"][0]
    assert registration["legalRepIdNumber"] and entity["dischargePermit"]  # samr and eco answered
    assert entity["taxCreditRating"] is None and registration["legalRep"]["population"] is None
    missing = {
        (tuple(e["path"]), e["extensions"]["code"], e["extensions"]["serviceName"]) for e in body["errors"]
    }
    assert missing == {
        (("legalEntity", "taxCreditRating"), "SUBGRAPH_UNAVAILABLE", "tax"),
        (
            ("legalEntity", "enterpriseRegistration", 0, "legalRep", "population"),
            "SUBGRAPH_UNAVAILABLE",
            "police",
        ),
    }


def test_a_new_composition_is_served_without_restart_and_a_bad_one_refused(
    gateway: str, tokens: dict[str, str], node_modules: Path, tmp_path: Path
) -> None:
    """Publishing a subgraph (eco joins) reaches a running router when the composition is
    written over its supergraph file; a composition that fails is never written, and a
    supergraph file that does not load leaves the working one serving."""
    from tests.federation.conftest import DEPARTMENTS, compose, service_sdl

    subgraphs = [
        {
            "name": d,
            "url": f"{gateway}/share/subgraphs/{d}/graphql",
            "sdl": service_sdl(gateway, d, tokens["eco"]),
        }
        for d in DEPARTMENTS
    ]
    without_eco = compose(node_modules, [s for s in subgraphs if s["name"] != "eco"])
    query = "{ dischargePermit(first: 1) { totalCount } }"
    with router(without_eco["supergraphSdl"], tmp_path) as url:
        path: Path = router.supergraph  # type: ignore[attr-defined]
        assert post(url, query, tokens["eco"]).status_code == 400  # no such field yet
        assert compose(node_modules, subgraphs, out=path)["errors"] == []
        for _ in range(100):
            answer = post(url, query, tokens["eco"])
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert answer.json()["data"]["dischargePermit"]["totalCount"] > 0
        working = path.read_text()
        broken = [*subgraphs, {**subgraphs[0], "name": "samr2", "sdl": "type Query { legalEntity: Int }"}]
        assert compose(node_modules, broken, out=path)["errors"]  # refused before it replaces anything
        assert path.read_text() == working
        path.write_text("this is not a supergraph")
        log: Path = router.log  # type: ignore[attr-defined]
        for _ in range(100):  # the watcher polls every 0.5 s
            if "supergraph.refused" in log.read_text():
                break
            time.sleep(0.1)
        assert "supergraph.refused" in log.read_text()
        assert post(url, query, tokens["eco"]).json()["data"]["dischargePermit"]["totalCount"] > 0
