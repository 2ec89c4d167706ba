"""The GraphQL over HTTP spec's reference audit suite (graphql-http's `serverAudits`, run by
tests/conformance/audit.mjs) against every GraphQL endpoint of a served gateway, each with a
caller it admits. Every MUST audit passes; every audit that does not is listed below with the
reason, so a new failure — or a deviation that went away — fails this test (docs/conformance.md).

The Node packages are required: without tests/conformance/node_modules this fails (run
`make conformance`, i.e. `npm ci --prefix tests/conformance`), it never skips."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.audit.test_officer_api import officer  # noqa: F401  (the module fixture)
from tests.support import ROOT, on_db, serve

NODE_DIR = ROOT / "tests" / "conformance"
ISSUER = "http://testserver"  # the session's tokens' issuer (tests.conftest.settings_for)

# Request errors (parse, validation, variable coercion) answer 400 under application/json too:
# the gateway follows the draft's rule for application/graphql-response+json everywhere, so a
# response without `data` is never a 200 (tests/integration/test_graphql_over_http.py).
REQUEST_ERROR_IS_400 = {
    "572B": "a document that does not parse is a 400 under application/json too",
    "FDE2": "a document that fails validation is a 400 under application/json too",
    "7B9B": "variables that do not coerce are a 400 under application/json too",
}
# POST only: the share tier, its subgraphs, /admin/graphql and /audit/graphql are read with
# credentials and a GET would put their queries in URLs and logs; only the open tier takes GET.
POST_ONLY = {
    "5A70": "GET is refused (405): POST only on this endpoint",
    "D6D5": "GET is refused (405): POST only on this endpoint",
    "6A70": "GET is refused (405): POST only on this endpoint",
}

# endpoint → the audits that do not pass there, with why
DEVIATIONS: dict[str, dict[str, str]] = {
    "/open/graphql": REQUEST_ERROR_IS_400,
    "/share/graphql": {**REQUEST_ERROR_IS_400, **POST_ONLY},
    "/share/subgraphs/hrss/graphql": {**REQUEST_ERROR_IS_400, **POST_ONLY},
    "/admin/graphql": {**REQUEST_ERROR_IS_400, **POST_ONLY},
    "/audit/graphql": {**REQUEST_ERROR_IS_400, **POST_ONLY},
}


@pytest.fixture(scope="module")
def node_modules() -> None:
    if not (NODE_DIR / "node_modules" / "graphql-http").is_dir():
        raise RuntimeError(
            "tests/conformance/node_modules is missing: run `make conformance` "
            "(npm ci --prefix tests/conformance)."
        )


@pytest.fixture(scope="module")
def gateway(demo_env: Any) -> Iterator[str]:
    """A served gateway accepting the session's tokens; the audits send ~60 anonymous requests
    a run, so the anonymous limit is raised (it is tested on its own elsewhere)."""
    with serve(demo_env, issuer=ISSUER, SHUQIAO_ANONYMOUS_RATE="100000/minute") as base:
        yield base


def run_audits(url: str, headers: dict[str, str], request_id: str) -> dict[str, Any]:
    """audit.mjs's report: {"requests": [the X-Request-IDs sent], "results": [one per audit]}."""
    args = ["node", str(NODE_DIR / "audit.mjs"), "--url", url, "--request-id", request_id]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    done = subprocess.run(args, capture_output=True, timeout=300, cwd=NODE_DIR, check=False)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(done.stderr.decode(errors="replace")[-3000:])
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def recorded(demo_env: Any, prefix: str) -> set[str]:
    """The request ids of the audit events whose id starts with `prefix`."""
    from gateway.audit.models import AuditEvent

    async def go(engine: Any) -> set[str]:
        async with engine.connect() as conn:
            q = select(AuditEvent.request_id).where(AuditEvent.request_id.like(f"{prefix}%"))
            return {row[0] for row in (await conn.execute(q)).all()}

    return on_db(demo_env, go)


def _caller(path: str, tokens: dict[str, str], officer: str) -> dict[str, str]:  # noqa: F811
    if path == "/open/graphql":
        return {}  # anonymous
    if path == "/audit/graphql":
        return {"Authorization": f"Bearer {officer}"}  # audit:read
    return {"Authorization": f"Bearer {tokens['hrss']}"}  # share:read (admits /admin/graphql)


@pytest.mark.parametrize("path", list(DEVIATIONS))
def test_reference_audits(
    node_modules: None,
    gateway: str,
    demo_env: Any,
    tokens: dict[str, str],
    officer: str,  # noqa: F811
    path: str,
) -> None:
    prefix = f"audit-{secrets.token_hex(4)}"
    report = run_audits(gateway + path, _caller(path, tokens, officer), prefix)
    results = report["results"]
    assert len(results) > 50  # the whole suite ran
    # every request is an audit event, the refused ones too (access_log.answer_once_recorded)
    assert recorded(demo_env, prefix) == set(report["requests"])
    failed = {r["id"]: r for r in results if r["status"] != "ok"}
    must = [r for r in failed.values() if r["name"].startswith("MUST")]
    assert not must, json.dumps(must, ensure_ascii=False, indent=1)
    unexpected = {i: r for i, r in failed.items() if i not in DEVIATIONS[path]}
    assert not unexpected, json.dumps(unexpected, ensure_ascii=False, indent=1)
    gone = set(DEVIATIONS[path]) - set(failed)
    assert not gone, f"these listed deviations now pass: drop them from DEVIATIONS and the docs: {gone}"
