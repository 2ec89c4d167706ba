"""The portal pages in Debian's chromium (Playwright, never a downloaded browser) against a served
gateway: a citizen searches 空气, narrows by department, opens the dataset, sees its charts,
downloads its CSV and finds the query for the workbench; the same pages work with JavaScript off;
and axe-core (from tests/web/package-lock.json, `make web-tests`) finds no serious or critical
accessibility violation on the catalogue and the dataset page in either language."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.support import serve

AXE = Path(__file__).resolve().parents[1] / "web" / "node_modules" / "axe-core" / "axe.min.js"
RESTRICTED = [
    "legalRepIdNumber",
    "legal_rep_id_number",
    "法定代表人身份证号",
    "contactPhone",
    "contact_phone",
    "联系电话",
]
pytestmark = [pytest.mark.browser, pytest.mark.parametrize("demo_env", ["sqlite"], indirect=True)]


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def test_search_facet_dataset_chart_download_and_query(served: str, browser: Any) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{served}/explore")
    expect(page.locator("#datasets > li")).to_have_count(4)
    page.fill("#search-q", "空气")
    page.press("#search-q", "Enter")
    expect(page.locator("#search-summary")).to_contain_text("找到 1 个数据集")
    assert page.url.startswith(f"{served}/explore?q=")
    page.click("#facets a[data-facet=dept][data-value=eco]")
    expect(page.locator("#facets a[data-facet=dept][data-value=eco]")).to_have_attribute(
        "aria-current", "true"
    )
    assert "dept=eco" in page.url and "q=" in page.url  # the state is the URL
    page.click("#datasets a[href='/explore/datasets/air_quality_daily']")
    expect(page.locator("h1")).to_contain_text("城市空气质量日报")
    # charts over the whole dataset, with their data tables
    expect(page.locator("#chart-series")).to_be_visible()
    expect(page.locator("#chart-series polyline")).to_have_count(1)
    expect(page.locator("#chart-groups rect")).to_have_count(11)
    # usage per day, from /stats/datasets/air_quality_daily.json (the last 14 days)
    expect(page.locator("#usage-table tbody tr")).to_have_count(14)
    # the CSV of the dataset: BOM, every row, no restricted field
    href = page.locator("#download-links a[data-format=csv]").get_attribute("href") or ""
    assert href == "/open/download/air_quality_daily.csv"
    body = httpx.get(served + href).content
    assert body.startswith(b"\xef\xbb\xbf")
    lines = body.decode("utf-8-sig").splitlines()
    total = httpx.post(f"{served}/open/graphql", json={"query": "{ airQualityDaily { totalCount } }"})
    assert len(lines) == total.json()["data"]["airQualityDaily"]["totalCount"] + 1
    assert not any(word in lines[0] for word in RESTRICTED)
    # the query on screen, for the workbench
    link = page.locator("#workbench-link").get_attribute("href") or ""
    assert link.startswith("/graphiql?query=")
    shown = page.locator("#query").text_content() or ""
    assert parse_qs(urlparse(link).query)["query"] == [shown.strip()]
    expect(page.locator("button.copy[data-target=query]")).to_have_count(1)  # the script's copy button
    # an enterprise page from the conditional dataset: the apply link
    page.goto(f"{served}/explore/datasets/tax_credit_rating")
    expect(page.locator("#apply-link")).to_have_attribute(
        "href", "/enterprise/apply?dataset=tax_credit_rating"
    )
    html = page.content()
    assert not any(word in html for word in RESTRICTED)
    assert not problems, problems


def test_catalogue_and_dataset_work_without_javascript(served: str, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{served}/explore")
    page.fill("#search-q", "许可")
    page.click("#search button[type=submit]")
    expect(page.locator("#datasets > li")).to_have_count(1)
    expect(page.locator("#search-summary")).to_contain_text("找到 1 个数据集")
    page.click("#datasets a")
    expect(page.locator("h1")).to_contain_text("排污许可证信息")
    expect(page.locator("#rows tbody tr")).to_have_count(20)
    # preview: filter and sort through the GET form
    page.goto(f"{served}/explore/datasets/enterprise_registration")
    page.select_option("#filter-field", "district")
    page.select_option("#filter-op", "eq")
    page.fill("#filter-value", "雁塔区")
    page.select_option("#order-field", "ESTABLISHMENT_DATE")
    page.select_option("#order-dir", "DESC")
    page.select_option("#page-size", "10")
    page.click("#apply-filter")
    expect(page.locator("#status")).to_contain_text("第 1 页")
    headers = page.locator("#rows thead th .gql").all_text_contents()
    district, established = headers.index("district"), headers.index("establishmentDate")
    rows = [r.locator("td").all_text_contents() for r in page.locator("#rows tbody tr").all()]
    assert len(rows) == 10 and all(r[district] == "雁塔区" for r in rows)
    dates = [r[established] for r in rows]
    assert dates == sorted(dates, reverse=True)
    # paging by links: the next page continues, and back returns to the same rows
    page.click("#next")
    expect(page.locator("#status")).to_contain_text("第 2 页")
    later = [r.locator("td").all_text_contents() for r in page.locator("#rows tbody tr").all()]
    assert later and all(r[district] == "雁塔区" for r in later)
    assert later[0][established] <= dates[-1] and later != rows
    page.click("#prev")
    expect(page.locator("#status")).to_contain_text("第 1 页")
    assert [r.locator("td").all_text_contents() for r in page.locator("#rows tbody tr").all()] == rows
    # the catalogue pages without script too
    page.goto(f"{served}/explore?lang=en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#search-summary")).to_contain_text("4 datasets found")
    context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_serious_or_critical_accessibility_violations(served: str, browser: Any, lang: str) -> None:
    assert AXE.exists(), "axe-core is installed by `make web-tests` (npm ci in tests/web)"
    # Playwright's add_script_tag inlines axe; the page's CSP (no inline script) would refuse it
    page = browser.new_context(bypass_csp=True).new_page()
    found = {}
    for path in (
        f"/explore?lang={lang}",
        f"/explore?q=%E7%A9%BA%E6%B0%94&dept=eco&lang={lang}",
        f"/explore/datasets/air_quality_daily?lang={lang}",
        f"/explore/datasets/enterprise_registration?field=district&value=%E9%9B%81%E5%A1%94%E5%8C%BA&lang={lang}",
        f"/explore/datasets/tax_credit_rating?lang={lang}",
    ):
        page.goto(served + path)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if bad:
            found[path] = bad
    assert not found, found


def test_keyboard_reaches_the_controls_with_a_visible_focus(served: str, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{served}/explore/datasets/air_quality_daily")
    page.keyboard.press("Tab")  # the first stop skips to the content
    assert page.evaluate("document.activeElement.className") == "skip"
    assert page.evaluate("getComputedStyle(document.activeElement).left") != "-9999px"  # it shows itself
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    reached: list[str] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        ident = page.evaluate("document.activeElement.id")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", ident  # every stop shows where the focus is
        reached.append(ident)
        if ident == "apply-filter":
            break
    # the filter form in order, after the metadata links and the scrollable 信息项 table
    order = [
        "filter-field",
        "filter-op",
        "filter-value",
        "order-field",
        "order-dir",
        "page-size",
        "apply-filter",
    ]
    assert [i for i in reached if i in order] == order, reached
