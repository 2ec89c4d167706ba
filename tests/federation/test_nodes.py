"""Nodes across levels: the province's demo node and a 西安市 node, each with its own
database, catalogue, keys and audit log, under one router. Entity lookups join records held
on both nodes; each node applies its own policies to the caller, whose token comes from the
province (the city trusts the province as an issuer); nothing else crosses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.db import create_engine
from gateway.demo.catalogue import DEPARTMENTS
from gateway.federation import CITY_DEPARTMENTS, Node, compose, setup_city_node, subgraphs
from tests.conftest import DemoEnv, create_database, init_store, settings_for
from tests.federation.conftest import post, router
from tests.support import on_db, serve

PERSON = """query($i: String!) { person(idNumber: $i) { idNumber
  population { name } socialInsurance { insuranceType }
  xaHousingFund { idNumber depositBase status } } }"""
LEGAL_ENTITY = """query($c: String!) { legalEntity(creditCode: $c) { creditCode
  enterpriseRegistration { name } xaFoodLicense { licenseNumber operatorName } } }"""


@pytest.fixture(scope="module")
def province(demo_env: DemoEnv) -> Iterator[str]:
    with serve(demo_env) as base:  # its own issuer: the URL it is served at
        yield base


CITY_DB: dict[str, str] = {}


@pytest.fixture(scope="module")
def city(province: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("xian")
    url, drop = create_database("sqlite", tmp)
    CITY_DB["url"] = url
    env = DemoEnv("sqlite", settings_for(url, tmp / "var"), {})
    init_store(env.settings)
    on_db(env, lambda e: setup_city_node(e, province))
    with serve(env) as base:
        yield base
    drop()


@pytest.fixture(scope="module")
def province_tokens(province: str, demo_env: DemoEnv) -> dict[str, str]:
    out = {}
    for dept in ("hrss", "samr"):
        c = demo_env.credentials["clients"][dept]
        r = httpx.post(
            f"{province}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
            timeout=30,
        )
        out[dept] = r.json()["access_token"]
    return out


@pytest.fixture(scope="module")
def routed(
    province: str, city: str, province_tokens: dict[str, str], node_modules: Path, tmp_path_factory: Any
) -> Iterator[str]:
    nodes = [
        Node("province", province, tuple(d.code for d in DEPARTMENTS)),
        Node("xian", city, tuple(d.code for d in CITY_DEPARTMENTS)),
    ]
    tmp = tmp_path_factory.mktemp("nodes")
    result = compose(subgraphs(nodes, province_tokens["hrss"]), tmp / "supergraph.graphql")
    assert result["errors"] == [] and result["hints"] == []
    with router(result["supergraphSdl"], tmp, "--name", "province-router") as url:
        yield url


@pytest.fixture(scope="module")
def keys_of(routed: str, province_tokens: dict[str, str]) -> dict[str, str]:
    q = "{ xaHousingFund(first: 1) { edges { node { idNumber fundEmployer { creditCode } } } } }"
    node = post(routed, q, province_tokens["hrss"]).json()["data"]["xaHousingFund"]["edges"][0]["node"]
    return {"i": node["idNumber"], "c": node["fundEmployer"]["creditCode"]}


def test_lookups_join_records_held_on_both_nodes(
    routed: str, province_tokens: dict[str, str], keys_of: dict[str, str]
) -> None:
    person = post(routed, PERSON, province_tokens["hrss"], {"i": keys_of["i"]}).json()
    assert "errors" not in person, person
    p = person["data"]["person"]
    assert p["population"] and p["xaHousingFund"]  # the province's police, the city's fund centre
    fund = p["xaHousingFund"][0]
    assert fund["idNumber"] == keys_of["i"]  # in clear under the city's grant to hrss
    assert "万" in fund["depositBase"]  # masked to a range: the city's policy for L3 personal data
    entity = post(routed, LEGAL_ENTITY, province_tokens["hrss"], {"c": keys_of["c"]}).json()
    assert "errors" not in entity, entity
    assert entity["data"]["legalEntity"]["enterpriseRegistration"]  # province (samr)
    assert entity["data"]["legalEntity"]["xaFoodLicense"]  # city (xa_market)


def test_each_node_applies_its_own_policies(
    routed: str, province_tokens: dict[str, str], keys_of: dict[str, str]
) -> None:
    """samr has no grant on the city's fund records (nor on the province's population)."""
    body = post(routed, PERSON, province_tokens["samr"], {"i": keys_of["i"]}).json()
    p = body["data"]["person"]
    assert p["xaHousingFund"] is None and p["population"] is None
    denied = {
        (e["path"][-1], e["extensions"]["code"], e["extensions"].get("dataset")) for e in body["errors"]
    }
    assert ("xaHousingFund", "FORBIDDEN_FIELD", "xa_housing_fund") in denied
    assert ("population", "FORBIDDEN_FIELD", "population") in denied


def test_the_city_answers_only_callers_it_can_authenticate(
    city: str, province: str, tokens: dict[str, str], province_tokens: dict[str, str]
) -> None:
    """A token from an issuer the city does not trust (the test session's) gets a 401; the
    province's token is the caller's identity there, and the city's own event names it."""
    q = {"query": "{ xaFoodLicense(first: 1) { totalCount } }"}
    url = f"{city}/share/subgraphs/xa_market/graphql"
    untrusted = httpx.post(url, json=q, headers={"Authorization": f"Bearer {tokens['hrss']}"}, timeout=30)
    assert untrusted.status_code == 401
    ok = httpx.post(
        url,
        json=q,
        headers={"Authorization": f"Bearer {province_tokens['hrss']}", "X-Shuqiao-Router": "audit-check"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.headers["signature"], ok.text  # signed by the city's key
    assert (
        httpx.get(f"{city}/keys/sm2", timeout=30).json()
        != httpx.get(f"{province}/keys/sm2", timeout=30).json()
    )


def test_city_audit_names_the_province_caller(city: str, province_tokens: dict[str, str]) -> None:
    q = {"query": "{ xaFoodLicense(first: 1) { totalCount } }"}
    headers = {"Authorization": f"Bearer {province_tokens['hrss']}", "X-Shuqiao-Router": "city-audit-check"}
    assert (
        httpx.post(
            f"{city}/share/subgraphs/xa_market/graphql", json=q, headers=headers, timeout=30
        ).status_code
        == 200
    )

    # the city's own audit log (its database) records the province's caller
    async def events() -> list[Any]:
        engine = create_engine(CITY_DB["url"])
        try:
            async with engine.connect() as conn:
                return list(await conn.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(20)))
        finally:
            await engine.dispose()

    mine: list[Any] = []
    for _ in range(50):
        mine = [e for e in asyncio.run(events()) if "city-audit-check" in e.detail]
        if mine:
            break
        time.sleep(0.1)
    event = mine[0]
    assert event.consumer == "hrss" and event.principal_id.endswith("#demo-hrss")
    assert orjson.loads(event.detail)["reads"][-1]["subgraph"]["router"] == "city-audit-check"


@pytest.mark.slow
def test_federation_demo_command(tmp_path: Path, node_modules: Path) -> None:
    """`shuqiao federation demo` from nothing: both nodes set up, composed, routed; the query
    it prints is answered by both nodes through the router; Ctrl-C stops everything."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from tests.support import ROOT, free_port

    ports = [str(free_port()) for _ in range(3)]
    out = tmp_path / "demo.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-c", "from gateway.cli import main; main()", "federation", "demo"),
                *("--var", str(tmp_path / "var"), "--province-port", ports[0]),
                *("--city-port", ports[1], "--router-port", ports[2]),
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("SHUQIAO_")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(1200):
            if "Ctrl-C stops all three" in out.read_text() or proc.poll() is not None:
                break
            time.sleep(0.1)
        text = out.read_text()
        assert "Ctrl-C stops all three" in text, text[-3000:]
        secret = re.search(r"-u (demo-hrss):(\S+) ", text)
        assert secret is not None
        token = httpx.post(
            f"http://127.0.0.1:{ports[0]}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(secret.group(1), secret.group(2)),
            timeout=30,
        ).json()["access_token"]
        from gateway.federation import QUERY

        body = post(f"http://127.0.0.1:{ports[2]}/", QUERY, token).json()
        assert "errors" not in body, body
        node = body["data"]["xaHousingFund"]["edges"][0]["node"]
        assert node["fundEmployer"]["enterpriseRegistration"] and node["fundEmployer"]["xaFoodLicense"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for port in ports:  # nothing left listening
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
