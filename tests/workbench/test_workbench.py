"""The query workbench's pages, examples and error codes (gateway.workbench), without a browser
(tests/workbench/test_workbench_browser.py drives the pages in chromium)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLObjectType,
    build_client_schema,
    get_introspection_query,
    get_named_type,
    parse,
    validate,
)

from gateway.identity.models import OAuthClient
from gateway.workbench.client import CLIENT_ID
from gateway.workbench.errors import CODES
from tests.conftest import gql
from tests.support import ROOT, on_db

CONFIG = re.compile(r'<body data-config="([^"]*)">')


@pytest.fixture(scope="module")
def generous(demo_env: Any) -> Iterator[Any]:
    """An app of this module's own: the examples run every open dataset's query anonymously,
    more than the shared app's anonymous allowance (60 a minute per address) may have left."""
    from starlette.testclient import TestClient

    from gateway.app import create_app

    with TestClient(create_app(replace(demo_env.settings, anonymous_rate="100000/minute"))) as c:
        yield c


def _config(page: str) -> dict[str, Any]:
    match = CONFIG.search(page)
    assert match, page[:500]
    return json.loads(html.unescape(match.group(1)))


def _csp(r: Any) -> dict[str, list[str]]:
    out = {}
    for part in r.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_open_page_has_no_inline_script_and_a_csp_without_eval(client: Any) -> None:
    r = client.get("/graphiql")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = _csp(r)
    assert csp["script-src"] == ["'self'"] and csp["worker-src"] == ["'self'"]
    assert csp["default-src"] == ["'none'"] and csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-eval'" not in r.headers["content-security-policy"]
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", r.text, re.S)
    assert scripts and all('src="/graphiql/' in attrs and body == "" for attrs, body in scripts)
    assert "cdn" not in r.text.lower() and "https://" not in r.text
    cfg = _config(r.text)
    assert cfg["tier"] == "open" and cfg["endpoint"] == "/open/graphql" and cfg["apiKeyHeader"] == "X-API-Key"
    assert "oauth" not in cfg


def test_share_page_registers_the_public_client_it_signs_in_with(client: Any, demo_env: Any) -> None:
    r = client.get("/graphiql/share")
    assert r.status_code == 200
    cfg = _config(r.text)
    assert cfg["tier"] == "share" and cfg["endpoint"] == "/share/graphql"
    oauth = cfg["oauth"]
    assert oauth["clientId"] == CLIENT_ID and oauth["scope"] == "share:read"
    assert oauth["redirectUri"] == "http://testserver/graphiql/share"

    async def row(engine: Any) -> Any:
        from sqlmodel.ext.asyncio.session import AsyncSession

        async with AsyncSession(engine) as s:
            return await s.get(OAuthClient, CLIENT_ID)

    client_row = on_db(demo_env, row)
    assert client_row is not None
    assert client_row.secret_hash == "" and client_row.auth_methods == "none"  # public: PKCE, no secret
    assert client_row.grant_types == "authorization_code" and client_row.scopes == "share:read"
    assert client_row.redirect_uris == oauth["redirectUri"]


def test_the_client_may_not_use_another_redirect_uri(client: Any) -> None:
    client.get("/graphiql/share")
    r = client.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": "https://evil.example/graphiql/share",
            "scope": "share:read",
            "state": "s",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        },
        follow_redirects=False,
    )
    assert r.status_code >= 400 and "evil.example" not in r.headers.get("location", "")


def _schema(client: Any, tier: str, token: str | None = None) -> Any:
    r = gql(client, tier, get_introspection_query(), token=token)
    assert r.status_code == 200, r.text
    return build_client_schema(r.json()["data"])


def test_open_examples_one_per_dataset_each_valid_and_answering(generous: Any) -> None:
    client = generous
    doc = client.get("/graphiql/examples.json").json()
    assert doc["tier"] == "open" and doc["endpoint"] == "/open/graphql"
    schema = _schema(client, "open")
    roots = [ex["rootField"] for ex in doc["examples"]]
    assert roots and len(roots) == len(set(roots))
    catalogue = client.get("/explore/api/catalogue").json()  # the same open schema's datasets
    assert sorted(roots) == sorted(d["rootField"] for d in catalogue["datasets"])
    for ex in doc["examples"]:
        assert validate(schema, parse(ex["query"])) == [], ex["query"]
        body = gql(client, "open", ex["query"]).json()
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        if ex["needsGrant"]:
            assert codes == {"FORBIDDEN"}, (ex["rootField"], body)
        else:
            assert codes == set(), (ex["rootField"], body)
            assert body["data"][ex["rootField"]]["edges"], ex["rootField"]


def test_share_examples_are_the_callers_own_schema(client: Any, tokens: dict[str, str]) -> None:
    anonymous = client.get("/graphiql/share/examples.json")
    assert (
        anonymous.status_code == 401
        and anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    )
    assert "bearer" in anonymous.headers["www-authenticate"].lower()
    r = client.get("/graphiql/share/examples.json", headers={"Authorization": f"Bearer {tokens['hrss']}"})
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
    doc = r.json()
    assert doc["tier"] == "share" and doc["department"] == "hrss"
    schema = _schema(client, "share", tokens["hrss"])
    roots = {ex["rootField"] for ex in doc["examples"]}
    connections = {n: get_named_type(f.type) for n, f in schema.query_type.fields.items()}
    datasets = {n for n, t in connections.items() if isinstance(t, GraphQLObjectType) and "edges" in t.fields}
    assert roots == datasets and "population" in roots  # hrss's share schema, not the open one
    for ex in doc["examples"]:
        assert validate(schema, parse(ex["query"])) == [], ex["query"]
        body = gql(client, "share", ex["query"], token=tokens["hrss"]).json()
        if not ex["needsGrant"]:  # readable without a grant: data, no refusal
            assert not body.get("errors"), (ex["rootField"], body)
    # another department sees its own schema's examples
    other = client.get("/graphiql/share/examples.json", headers={"Authorization": f"Bearer {tokens['eco']}"})
    assert other.json()["department"] == "eco"


def _codes_raised() -> set[str]:
    """The codes the GraphQL endpoints' modules can answer with."""
    import resolvers.errors as errs

    found = {v for k, v in vars(errs).items() if k.isupper() and isinstance(v, str)}
    problem = re.compile(r'Problem\(\s*\d{3},.*?"([A-Z][A-Z_]+)"', re.S)
    for rel in ("gateway/graphql_http.py", "gateway/problems.py", "gateway/portal/cors.py"):
        found |= set(problem.findall((ROOT / rel).read_text()))
    found |= {"UNAUTHENTICATED", "FORBIDDEN"}  # gateway/identity/bearer.py, by status
    requests_py = (ROOT / "gateway/crypto/requests.py").read_text()
    found |= set(re.findall(r'return "([A-Z][A-Z_]+)"', requests_py))
    return found


def test_error_codes_are_documented_and_real() -> None:
    documented = {c.code for c in CODES}
    assert len(documented) == len(CODES)
    missing = _codes_raised() - documented
    assert missing == set(), f"document these in gateway/workbench/errors.py: {sorted(missing)}"
    sources = "".join(p.read_text() for d in ("gateway", "resolvers") for p in (ROOT / d).rglob("*.py"))
    stale = {c for c in documented if f'"{c}"' not in sources.replace("gateway/workbench", "")}
    assert stale == set(), f"documented but never answered: {sorted(stale)}"


def test_errors_page_and_twin(client: Any) -> None:
    twin = client.get("/graphiql/errors.json").json()
    assert [c["code"] for c in twin["codes"]] == [c.code for c in CODES]
    assert set(twin["kinds"]) == {"request", "field", "service"}
    page = client.get("/graphiql/errors")
    assert page.status_code == 200 and "<script" not in page.text
    csp = _csp(page)
    assert csp["style-src"] == ["'self'"] and "script-src" not in csp  # default-src 'none': no script at all
    for c in CODES:
        assert f'id="{c.code}"' in page.text and html.escape(c.zh) in page.text


def test_vendored_files_only(client: Any) -> None:
    js = client.get("/graphiql/vendor/graphiql.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    assert client.get("/graphiql/vendor/graphiql.css").headers["content-type"].startswith("text/css")
    assert client.get("/graphiql/vendor/editor.worker.js").status_code == 200
    licences = client.get("/graphiql/vendor/licenses/packages.json")
    assert licences.status_code == 200 and any(p["name"] == "graphiql" for p in licences.json())
    for bad in ("../workbench/workbench.js", "..%2F..%2Fapp.py", "nope.js", "licenses"):
        assert client.get(f"/graphiql/vendor/{bad}").status_code == 404, bad
    assert client.get("/graphiql/assets/workbench.js").status_code == 200
    assert client.get("/graphiql/assets/index.html").status_code == 404


def test_vendored_files_compressed_and_revalidated(client: Any) -> None:
    raw = (ROOT / "gateway/static/graphiql/graphiql.js").read_bytes()
    gz = client.get("/graphiql/vendor/graphiql.js", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.content == raw  # httpx decompressed it
    assert int(gz.headers["content-length"]) < len(raw) / 2
    assert "Accept-Encoding" in gz.headers["vary"] and gz.headers["cache-control"] == "no-cache"
    plain = client.get("/graphiql/vendor/graphiql.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == raw
    again = client.get("/graphiql/vendor/graphiql.js", headers={"If-None-Match": gz.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    font = client.get("/graphiql/vendor/codicon.ttf")
    assert font.headers["content-type"] == "font/ttf"
    listed = client.get("/graphiql/vendor/licenses/packages.json").json()
    version = next(p["version"] for p in listed if p["name"] == "graphiql")
    licence = client.get(f"/graphiql/vendor/licenses/graphiql@{version}/LICENSE")
    assert licence.status_code == 200 and licence.headers["content-type"].startswith("text/plain")


def test_the_page_script_keeps_the_token_out_of_urls() -> None:
    """A static reading of the page's script: the code leaves the address bar before the exchange,
    the token goes only to sessionStorage and the Authorization header."""
    js = (Path(ROOT) / "gateway/static/workbench/workbench.js").read_text()
    finish = js[js.index("async function finishSignIn") :]
    assert finish.index("history.replaceState") < finish.index("await fetch(o.token")
    assert "localStorage.setItem" not in js and "document.cookie" not in js
    assert "access_token=" not in js and "#access_token" not in js
