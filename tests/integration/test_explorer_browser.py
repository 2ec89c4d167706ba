"""The public explorer in a real browser (Debian's chromium through Playwright, never a downloaded browser)
against a served gateway, anonymously and under the pages' own Content-Security-Policy: the catalogue lists
the demo's open datasets and nothing else, a dataset page's rows are exactly what /open/graphql answers to
the query it shows (its curl command works as copied), the next page follows the cursor, a filter narrows
the rows, restricted fields appear nowhere, and a conditionally open dataset explains the API key.
(The pages are server-rendered since issue 17; tests/portal/test_pages_browser.py has the no-JS and
accessibility checks.)"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import chromium
from tests.support import serve

OPEN_NAMES = ["企业登记信息", "纳税信用等级", "排污许可证信息", "城市空气质量日报"]
NEVER_ON_THE_PAGE = [
    "legalRepIdNumber",
    "法定代表人身份证号",
    "contactPhone",
    "联系电话",
    "taxPaidAmount",
    "年度纳税额",
    "人口基础信息",
    "社会保险参保缴费信息",
    "socialInsurance",
    "population",
    "idNumber",
]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(demo_env: Any) -> Iterator[str]:
    with serve(demo_env) as base:
        yield base


def _cell(v: Any) -> str:
    """A JSON value as the page writes it (String(v) in JavaScript)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _curl(command: str) -> tuple[str, dict[str, str], str]:
    """The URL, headers and body of the page's curl command, parsed as a POSIX shell would."""
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["curl", "-s"], argv
    url, headers, data = argv[2], {}, None
    rest = iter(argv[3:])
    for flag in rest:
        value = next(rest)
        if flag == "-H":
            name, _, val = value.partition(": ")
            headers[name] = val
        elif flag == "-d":
            data = value
        else:
            raise AssertionError(f"unexpected curl option {flag}")
    assert data is not None
    return url, headers, data


def _table(page: Any) -> tuple[list[str], list[list[str]]]:
    """The column names (GraphQL fields) and the cells of the rows table."""
    fields = [t.strip() for t in page.locator("#rows thead th .gql").all_text_contents()]
    cells = page.locator("#rows tbody td").all_text_contents()
    return fields, [cells[i : i + len(fields)] for i in range(0, len(cells), len(fields))] if fields else []


def _rows(doc: dict[str, Any], root: str, fields: list[str]) -> list[list[str]]:
    return [[_cell(e["node"][f]) for f in fields] for e in doc["data"][root]["edges"]]


def _run_curl(page: Any) -> tuple[dict[str, Any], dict[str, str]]:
    url, headers, data = _curl(page.locator("#curl").text_content() or "")
    return httpx.post(url, headers=headers, content=data.encode()).json(), headers


# One backend is enough here: what differs between SQLite and PostgreSQL (the catalogue, the rows, paging,
# filters) is covered on both by test_explorer_catalogue.py and the tier tests; this checks the page.
@pytest.mark.parametrize("demo_env", ["sqlite"], indirect=True)
def test_public_browses_open_data_anonymously(served: str, demo_env: Any) -> None:
    from playwright.sync_api import expect

    seen: list[str] = []
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        sent: list[dict[str, str]] = []
        page.on("request", lambda r: sent.append(r.headers))

        page.goto(f"{served}/")  # the gateway's root leads to the explorer
        assert page.url == f"{served}/explore"
        items = page.locator("#datasets > li")
        expect(items).to_have_count(4)
        listed = " ".join(items.all_inner_texts())
        assert all(name in listed for name in OPEN_NAMES), listed
        assert "有条件开放" in listed and "无条件开放" in listed and "610000-SAMR-000001" in listed
        seen.append(page.content())

        # -- one dataset: metadata, fields, first page as /open/graphql answers the query shown
        page.click("#datasets a[href='/explore/datasets/enterprise_registration']")
        expect(page.locator("#status")).to_contain_text("第 1 页")
        expect(page.locator("#dataset-meta")).to_contain_text("省市场监督管理局")
        expect(page.locator("#fields tbody")).to_contain_text("法定代表人")
        expect(page.locator("#apikey-notice")).to_have_count(0)
        fields, first = _table(page)
        assert "legalRepresentative" in fields and len(first) == 20
        direct, headers = _run_curl(page)
        assert "X-API-Key" not in headers
        assert "errors" not in direct and _rows(direct, "enterpriseRegistration", fields) == first
        total = direct["data"]["enterpriseRegistration"]["totalCount"]
        expect(page.locator("#status")).to_contain_text(f"共 {total:,} 条")
        seen.append(page.content())

        # -- next page via the cursor
        page.click("#next")
        expect(page.locator("#status")).to_contain_text("第 2 页")
        _, second = _table(page)
        after = direct["data"]["enterpriseRegistration"]["pageInfo"]["endCursor"]
        assert f'"after": "{after}"' in (page.locator("#variables").text_content() or "")
        page2, _ = _run_curl(page)
        assert _rows(page2, "enterpriseRegistration", fields) == second and second != first
        page.click("#prev")
        expect(page.locator("#status")).to_contain_text("第 1 页")
        assert _table(page)[1] == first

        # -- a filter through the schema's `where`
        page.select_option("#filter-field", "district")
        page.select_option("#filter-op", "eq")
        page.fill("#filter-value", "雁塔区")
        page.click("#apply-filter")
        expect(page.locator("#variables")).to_contain_text("雁塔区")
        expect(page.locator("#status")).to_contain_text("第 1 页")
        _, filtered = _table(page)
        district = fields.index("district")
        assert filtered and all(r[district] == "雁塔区" for r in filtered)
        copied, _ = _run_curl(page)
        assert _rows(copied, "enterpriseRegistration", fields) == filtered
        n = copied["data"]["enterpriseRegistration"]["totalCount"]
        assert 0 < n < total
        expect(page.locator("#status")).to_contain_text(f"共 {n} 条")
        # -- the CSV link downloads every row under the filter (BOM, header of field names)
        href = page.locator("#download-links a[data-format=csv]").get_attribute("href") or ""
        assert href.startswith("/open/download/enterprise_registration.csv?where=")
        csv_body = httpx.get(served + href).content
        assert csv_body.startswith(b"\xef\xbb\xbf")
        assert len(csv_body.decode("utf-8-sig").splitlines()) == n + 1
        seen.append(page.content())

        # -- ordering (城市空气质量日报), and the next page continues the order
        page.goto(f"{served}/explore/datasets/air_quality_daily")
        page.select_option("#page-size", "50")
        page.select_option("#order-field", "DATE")
        page.select_option("#order-dir", "DESC")
        page.click("#apply-filter")
        expect(page.locator("#status")).to_contain_text("本页 50 条")
        aq_fields, aq_rows = _table(page)
        dates = [r[aq_fields.index("date")] for r in aq_rows]
        assert dates == sorted(dates, reverse=True)
        page.click("#next")
        expect(page.locator("#status")).to_contain_text("第 2 页")
        later, _ = _run_curl(page)
        assert _rows(later, "airQualityDaily", aq_fields) == _table(page)[1]
        assert max(r[aq_fields.index("date")] for r in _table(page)[1]) <= dates[-1]

        # -- a conditionally open dataset: the API key is explained, the API's refusal shown as text
        page.goto(f"{served}/explore/datasets/tax_credit_rating")
        expect(page.locator("#apikey-notice")).to_be_visible()
        expect(page.locator("#apikey-notice")).to_contain_text("X-API-Key")
        expect(page.locator("#api-error")).to_contain_text("FORBIDDEN")
        expect(page.locator("#rows tbody tr")).to_have_count(0)
        _, headers, data = _curl(page.locator("#curl").text_content() or "")
        placeholder = headers["X-API-Key"]
        assert placeholder.startswith("<")
        headers["X-API-Key"] = demo_env.credentials["api_keys"]["demo-bank"]
        granted = httpx.post(f"{served}/open/graphql", headers=headers, content=data.encode()).json()
        assert "errors" not in granted and granted["data"]["taxCreditRating"]["totalCount"] > 0
        seen.append(page.content())

        # -- nothing the public may not see, anywhere on the pages
        for html in seen:
            for text in NEVER_ON_THE_PAGE:
                assert text not in html, text
        assert not any("x-api-key" in {k.lower() for k in h} for h in sent)  # the page never sends a key
        assert not problems, problems
