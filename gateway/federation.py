"""Nodes across levels: the province's demo node and a city node (西安市) under one router.

Each node is a whole Shuqiao deployment with its own database, catalogue, keys and audit
log. The city node holds two datasets of its own, keyed by the same entities as the
province's (`LegalEntity` by credit code, `Person` by ID number), so `legalEntity(...)` and
`person(...)` through the router join records held on both nodes. Callers keep the token of
their own node: the city trusts the province as an external issuer (gateway.identity.external,
discovery + JWKS, `dept` claim mapped to the same department codes), so a province
department's token is its identity at the city too, and the city applies its own policies to
it. Nothing is copied between nodes: each answers from its own store, to that caller only.

`shuqiao federation demo` (gateway.cli) sets both nodes up, serves them, composes their
subgraphs (federation/compose.mjs) and starts the router (federation/router.mjs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from catalogue import service
from catalogue.pool import pool_table
from catalogue.spec import DatasetSpec, DepartmentSpec, Entity, FieldSpec, FieldType
from gateway.demo.catalogue import DEPARTMENTS
from gateway.demo.generate import DEFAULT_SEED, DemoGenerator
from policies.model import PI, Category, Level, MaskRule, Open, Share, Tier

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "federation"
CITY_CODE = "610100"  # 西安市 (GB/T 2260)
CITY_ROWS = 300  # per dataset: the first Xi'an enterprises and residents of the province's demo

CITY_DEPARTMENTS = (
    DepartmentSpec("xa_market", "西安市市场监督管理局", "Xi'an Administration for Market Regulation"),
    DepartmentSpec("xa_housing", "西安住房公积金管理中心", "Xi'an Housing Provident Fund Centre"),
)

XA_FOOD_LICENSE = DatasetSpec(
    code="xa_food_license",
    resource_code=f"{CITY_CODE}-XA_MARKET-000001",
    name="食品经营许可",
    name_en="Food business licences (Xi'an)",
    department="xa_market",
    category=Category.THEME,
    share=Share.UNCONDITIONAL,
    open=Open.UNCONDITIONAL,
    theme="市场主体",
    update_cycle="daily",
    description="西安市核发的食品经营许可证。",
    entity=Entity.LEGAL_ENTITY,
    entity_field="credit_code",
    fields=(
        FieldSpec("license_number", FieldType.STRING, "许可证编号", nullable=False, indexed=True),
        FieldSpec("credit_code", FieldType.STRING, "统一社会信用代码", nullable=False, indexed=True),
        FieldSpec("operator_name", FieldType.STRING, "经营者名称"),
        FieldSpec("business_scope", FieldType.STRING, "经营项目"),
        FieldSpec("valid_to", FieldType.DATE, "有效期至"),
    ),
)

XA_HOUSING_FUND = DatasetSpec(
    code="xa_housing_fund",
    resource_code=f"{CITY_CODE}-XA_HOUSING-000001",
    name="住房公积金缴存信息",
    name_en="Housing provident fund contributions (Xi'an)",
    department="xa_housing",
    category=Category.THEME,
    share=Share.CONDITIONAL,
    open=Open.NONE,
    theme="社会保障",
    update_cycle="monthly",
    description="在西安缴存住房公积金的职工：缴存单位、缴存基数、缴存状态。",
    entity=Entity.PERSON,
    entity_field="id_number",
    fields=(
        FieldSpec(
            "id_number",
            FieldType.STRING,
            "公民身份号码",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.ID_NUMBER,
            nullable=False,
            indexed=True,
        ),
        FieldSpec(
            "employer_credit_code",
            FieldType.STRING,
            "缴存单位统一社会信用代码",
            references=Entity.LEGAL_ENTITY,
            link_name="fund_employer",
        ),
        FieldSpec(
            "deposit_base",
            FieldType.DECIMAL,
            "缴存基数（元）",
            level=Level.L3,
            pi=PI.PERSONAL,
            mask=MaskRule.AMOUNT_RANGE,
        ),
        FieldSpec("status", FieldType.STRING, "缴存状态"),
    ),
)

CITY_DATASETS = (XA_FOOD_LICENSE, XA_HOUSING_FUND)
# The city's own grant (its policy, on its node): hrss may read the fund records, the ID
# number in clear (so `person(idNumber:)` finds them), the deposit base masked.
CITY_GRANT = {
    "dataset": "xa_housing_fund",
    "consumer": "hrss",
    "fields": ["id_number", "employer_credit_code", "deposit_base", "status"],
    "clear_fields": ["id_number"],
    "purpose": "社保待遇资格认证（跨层级核验公积金缴存）",
}


def _city_rows(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, Any]]]:
    """Rows for the city's datasets about the province demo's own Xi'an enterprises and people
    (same seed, same keys), so that entity lookups find records on both nodes."""
    gen = DemoGenerator("small", seed)
    firms = [
        e for e in gen.dicts("enterprise_registration") if str(e["district_code"]).startswith(CITY_CODE[:4])
    ][:CITY_ROWS]
    people = [p for p in gen.dicts("population") if str(p["district_code"]).startswith(CITY_CODE[:4])]
    licences = [
        {
            "license_number": f"JY1{f['credit_code'][2:8]}{i:07d}",
            "credit_code": f["credit_code"],
            "operator_name": f["name"],
            "business_scope": ("预包装食品销售", "热食类食品制售", "自制饮品制售")[i % 3],
            "valid_to": date(2027, 1, 1) + timedelta(days=37 * i % 1500),
        }
        for i, f in enumerate(firms)
    ]
    funds = [
        {
            "id_number": p["id_number"],
            "employer_credit_code": firms[i % len(firms)]["credit_code"],
            "deposit_base": Decimal(4000 + 137 * i % 16000),
            "status": "正常" if i % 7 else "封存",
        }
        for i, p in enumerate(people[:CITY_ROWS])
    ]
    return {"xa_food_license": licences, "xa_housing_fund": funds}


async def setup_city_node(
    engine: AsyncEngine, province_issuer: str, seed: int = DEFAULT_SEED
) -> dict[str, int]:
    """The city node's catalogue and rows (idempotent), and the province as a trusted issuer
    whose departments are known here by the same codes."""
    from gateway.identity.clients import add_issuer

    catalogue = await service.load_catalogue(engine)
    for dept in (*DEPARTMENTS, *CITY_DEPARTMENTS):
        if dept.code not in catalogue.departments:
            await service.save_department(engine, dept)
    for spec in CITY_DATASETS:
        if spec.code not in catalogue.datasets:
            await service.save_dataset(engine, spec)
    from gateway.grants.models import GrantRecord
    from gateway.grants.service import create_grant

    async with engine.connect() as conn:
        granted = (await conn.execute(select(GrantRecord).limit(1))).first() is not None
    if not granted:
        await create_grant(engine, tier=Tier.SHARE, **CITY_GRANT)  # type: ignore[arg-type]
    counts = {}
    for code, rows in _city_rows(seed).items():
        table = pool_table(next(s for s in CITY_DATASETS if s.code == code))
        async with engine.begin() as conn:
            if (await conn.execute(select(table).limit(1))).first() is None:
                await conn.execute(insert(table), rows)
        counts[code] = len(rows)
    await add_issuer(
        engine,
        province_issuer,
        f"{province_issuer}/.well-known/openid-configuration",
        "shuqiao:share",
        department_map={d.code: d.code for d in DEPARTMENTS},
        scopes=["share:read"],
    )
    return counts


# ---------------------------------------------------------------- running the demo


@dataclass(frozen=True)
class Node:
    name: str  # the prefix of its subgraphs' names in the supergraph
    base: str  # its URL
    departments: tuple[str, ...]


def subgraphs(nodes: list[Node], token: str) -> list[dict[str, str]]:
    """Every department subgraph of every node, as the token's caller sees it."""
    out = []
    for node in nodes:
        for dept in node.departments:
            url = f"{node.base}/share/subgraphs/{dept}/graphql"
            r = httpx.post(
                url,
                json={"query": "{ _service { sdl } }"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            r.raise_for_status()
            out.append(
                {"name": f"{node.name}_{dept}", "url": url, "sdl": r.json()["data"]["_service"]["sdl"]}
            )
    return out


def compose(subgraph_list: list[dict[str, str]], out: Path) -> dict[str, Any]:
    """federation/compose.mjs; writes `out` only when composition succeeds."""
    done = subprocess.run(  # noqa: S603 - our own script, our arguments
        ["node", str(NODE_DIR / "compose.mjs"), "--out", str(out)],  # noqa: S607 - node from PATH
        input=json.dumps(subgraph_list).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if not done.stdout:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def wait_ready(url: str, attempts: int = 300) -> None:
    for _ in range(attempts):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our interpreter / node and our scripts
            args, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def node_env(var_dir: Path, base: str) -> dict[str, str]:
    return {
        "SHUQIAO_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'shuqiao.db'}",
        "SHUQIAO_VAR_DIR": str(var_dir),
        "SHUQIAO_MASTER_KEY_FILE": str(var_dir / "master.key"),
        "SHUQIAO_ISSUER": base,
    }


def serve_node(var_dir: Path, port: int, stack: ExitStack) -> str:
    base = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "uvicorn", "asgi:app", "--port", str(port), "--log-level", "warning"]
    stack.enter_context(process(args, node_env(var_dir, base), var_dir / "server.log"))
    wait_ready(f"{base}/healthz")
    return base


def serve_router(supergraph: Path, port: int, stack: ExitStack, log: Path, *args: str) -> str:
    cmd = ["node", str(NODE_DIR / "router.mjs"), "--supergraph", str(supergraph), "--port", str(port), *args]
    stack.enter_context(process(cmd, {"NODE_ENV": "production"}, log, cwd=NODE_DIR))
    url = f"http://127.0.0.1:{port}/"
    wait_ready(url)
    return url


# One query, two nodes: the city's fund record, its employer at the province (samr) and the city (xa_market).
QUERY = (
    "{ xaHousingFund(first: 1) { edges { node { depositBase "
    "fundEmployer { enterpriseRegistration { name } xaFoodLicense { licenseNumber } } } } } }"
)


def demo(var: Path, province_port: int, city_port: int, router_port: int, echo: Any) -> None:
    """Set up and run the two-node demo until interrupted (`shuqiao federation demo`)."""
    import asyncio

    from gateway.db import create_engine

    province_dir, city_dir = var / "province", var / "xian"
    province = f"http://127.0.0.1:{province_port}"
    city = f"http://127.0.0.1:{city_port}"
    cli = [sys.executable, "-c", "from gateway.cli import main; main()"]
    for d, base, command in ((province_dir, province, ["demo", "init"]), (city_dir, city, ["init"])):
        d.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **node_env(d, base)}
        subprocess.run([*cli, *command], env=env, cwd=ROOT, check=True)  # noqa: S603 - our own CLI

    async def city_setup() -> dict[str, int]:
        engine = create_engine(node_env(city_dir, city)["SHUQIAO_DATABASE_URL"])
        try:
            return await setup_city_node(engine, province)
        finally:
            await engine.dispose()

    asyncio.run(city_setup())
    creds = json.loads((province_dir / "demo-credentials.json").read_text())["clients"]
    with ExitStack() as stack:
        serve_node(province_dir, province_port, stack)
        serve_node(city_dir, city_port, stack)
        c = creds["hrss"]
        token = httpx.post(
            f"{province}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(c["client_id"], c["client_secret"]),
            timeout=30,
        ).json()["access_token"]
        nodes = [
            Node("province", province, tuple(d.code for d in DEPARTMENTS)),
            Node("xian", city, tuple(d.code for d in CITY_DEPARTMENTS)),
        ]
        supergraph = var / "supergraph.graphql"
        result = compose(subgraphs(nodes, token), supergraph)
        if result["errors"]:
            raise RuntimeError(f"composition failed: {result['errors']}")
        router = serve_router(supergraph, router_port, stack, var / "router.log", "--name", "province-router")
        echo(
            f"""
Two Shuqiao nodes under one router:
  province node  {province}   (demo departments; credentials in {province_dir / "demo-credentials.json"})
  西安市 node     {city}   (xa_market, xa_housing; trusts the province's tokens)
  router         {router}   (supergraph: {supergraph})

A province department's token works through the router; each node applies its own policies:
  TOKEN=$(curl -s -u {c["client_id"]}:{c["client_secret"]} -d grant_type=client_credentials \\
          {province}/oauth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -s {router} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    -d '{{"query":"{QUERY}"}}'
Ctrl-C stops all three."""
        )
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            echo("stopping")
