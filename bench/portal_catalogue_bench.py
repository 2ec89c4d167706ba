"""The catalogue page's server time with 1,000 datasets (issue 17 item 9: target < 100 ms).

    .venv/bin/python bench/portal_catalogue_bench.py [--datasets 1000] [--requests 200]

Builds a fresh SQLite store in a temporary directory (migrations, keys), applies one catalogue
document of N datasets (20 departments, every category, theme, update cycle and open attribute,
Chinese names that jieba segments) with `catalogue.apply.apply_document` — the path of
`shuqiao catalog apply` — and serves it in-process (the ASGI app with its lifespan, no network).
For each search state it times GET /explore (the HTML page: budget check, search, facets,
template, the access event written to the audit log before the answer leaves) and, as the
baseline measured in the same run, GET /explore.json (the same search without the HTML), and
prints median and p95 of each with their ratio, and the CPU time per request (less sensitive than
wall time to other jobs on the machine; it includes the in-process test client's share). The
first request of a state is not counted (it builds the schema, the listing and the search index
once per catalogue version).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from starlette.testclient import TestClient  # noqa: E402

from catalogue.apply import apply_document  # noqa: E402
from catalogue.document import CatalogueDoc  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.db import create_engine, upgrade  # noqa: E402
from gateway.identity.tokens import load_signing_key  # noqa: E402
from gateway.secrets import load_master_key  # noqa: E402
from gateway.settings import Settings  # noqa: E402

SUBJECTS = [
    "空气质量",
    "企业登记",
    "排污许可",
    "公共厕所",
    "道路交通",
    "气象观测",
    "水质监测",
    "学校名录",
    "医疗机构",
    "公交线路",
    "物业管理",
    "房屋租赁",
    "农产品价格",
    "旅游景点",
    "体育场馆",
    "养老机构",
]
PLACES = ["西安市", "宝鸡市", "咸阳市", "铜川市", "渭南市", "延安市", "榆林市", "汉中市", "安康市", "商洛市"]
THEMES = ["生态环境", "市场主体", "交通出行", "教育", "卫生健康", "城乡建设", "农业农村", "文化旅游"]
CYCLES = ["daily", "monthly", "yearly", "realtime", "weekly", "irregular"]
CATEGORIES = ["base", "theme", "special"]
STATES = [
    "/explore",
    "/explore?q=%E7%A9%BA%E6%B0%94",  # 空气
    "/explore?dept=d03&sort=modified",
    "/explore?q=%E6%B0%B4%E8%B4%A8%E7%9B%91%E6%B5%8B&category=theme",  # 水质监测
    "/explore?page=7",
]


def document(n: int) -> dict[str, Any]:
    departments = [
        {"code": f"d{i:02d}", "name": f"{PLACES[i % 10]}第{i}部门", "name_en": f"Dept {i}"} for i in range(20)
    ]
    datasets = []
    for i in range(n):
        subject, place = SUBJECTS[i % len(SUBJECTS)], PLACES[(i // len(SUBJECTS)) % len(PLACES)]
        datasets.append(
            {
                "code": f"ds_{i:04d}",
                "resource_code": f"610000-D{i % 20:02d}-{i:06d}",
                "name": f"{place}{subject}（{i}）",
                "name_en": f"{subject} {i}",
                "department": f"d{i % 20:02d}",
                "category": CATEGORIES[i % 3],
                "theme": THEMES[i % len(THEMES)],
                "update_cycle": CYCLES[i % len(CYCLES)],
                "share": "unconditional",
                "open": "conditional" if i % 10 == 0 else "unconditional",
                "licence": "CC-BY-4.0",
                "contact": f"data{i}@example.gov.cn",
                "tags": [subject, place],
                "description": f"{place}的{subject}数据，按{CYCLES[i % len(CYCLES)]}更新，含区县和日期。",
                "fields": [
                    {"name": "编号", "column": "code", "type": "string", "nullable": False, "indexed": True},
                    {"name": "名称", "column": "name", "type": "string"},
                    {"name": "所在区县", "column": "district", "type": "string"},
                    {"name": "日期", "column": "day", "type": "date"},
                    {"name": "数值", "column": "amount", "type": "float"},
                    {
                        "name": "联系人",
                        "column": "keeper",
                        "type": "string",
                        "level": "L3",
                        "pi": "personal",
                        "mask": "name",
                        "open": "none",
                    },
                ],
            }
        )
    return {"format_version": 1, "departments": departments, "datasets": datasets}


def setup(tmp: Path, n: int) -> Settings:
    var = tmp / "var"
    var.mkdir(parents=True)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        var_dir=var,
        master_key_file=var / "master.key",
        issuer="http://bench",
        explorer_rate="1000000/minute",
        catalogue_poll_seconds=0.0,
    )
    load_master_key(settings.master_key_file, create=True)
    load_signing_key(var / "keys" / "token-es256.pem", create=True)
    upgrade(settings.database_url)

    async def apply() -> None:
        engine = create_engine(settings.database_url)
        try:
            result = await apply_document(engine, CatalogueDoc.model_validate(document(n)))
            assert result.applied
        finally:
            await engine.dispose()

    asyncio.run(apply())
    return settings


CPU: dict[str, float] = {}  # path → CPU ms per request (server and the in-process client)


def timed(c: TestClient, path: str, runs: int) -> list[float]:
    r = c.get(path)  # builds what is built once per catalogue version
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    out = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        r = c.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200
    CPU[path] = (time.process_time() - cpu) * 1000 / runs
    return out


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[18]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        settings = setup(Path(tmp), args.datasets)
        print(f"store: {args.datasets} datasets applied in {time.perf_counter() - started:.1f} s (SQLite)")
        with TestClient(create_app(settings)) as c:
            listed = c.get("/explore.json").json()["count"]
            print(f"listed in the open catalogue: {listed}")
            print(
                f"{'state':<58} {'html med':>9} {'html p95':>9} {'json med':>9} {'json p95':>9} {'ratio':>6} "
                f"{'html cpu':>9} {'json cpu':>9}"
            )
            all_html: list[float] = []
            for state in STATES:
                html = timed(c, state, args.requests)
                twin = timed(c, state.replace("/explore", "/explore.json", 1), args.requests)
                all_html += html
                ratio = statistics.median(html) / statistics.median(twin)
                print(
                    f"{state:<58} {statistics.median(html):>7.1f}ms {p95(html):>7.1f}ms "
                    f"{statistics.median(twin):>7.1f}ms {p95(twin):>7.1f}ms {ratio:>5.2f}x "
                    f"{CPU[state]:>7.1f}ms {CPU[state.replace('/explore', '/explore.json', 1)]:>7.1f}ms"
                )
            med, top = statistics.median(all_html), p95(all_html)
            verdict = "within" if top < 100 else "OVER"
            print(
                f"catalogue page, all states: median {med:.1f} ms, p95 {top:.1f} ms — "
                f"{verdict} the 100 ms target"
            )


if __name__ == "__main__":
    main()
