"""Downloads (gateway.portal.downloads): formats, field policies equal to the open tier's, filters,
bounded pages with a next link, the download budget, and the two audit events."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from gateway.app import build_state, create_app
from gateway.portal import downloads
from gateway.portal.usage import tally
from tests.conftest import gql

RESTRICTED = ["legalRepIdNumber", "contactPhone", 'taxPaidAmount"', "法定代表人身份证号", "联系电话"]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.fail = False

    async def record(self, event: Any) -> None:
        if self.fail:
            raise OSError("disk full")
        self.events.append(event)


@pytest.fixture(scope="module")
def recorder(demo_env: Any) -> Recorder:
    return Recorder()  # one per backend, as the app


@pytest.fixture(scope="module")
def app(demo_env: Any, recorder: Recorder) -> Iterator[TestClient]:
    settings = dataclasses.replace(demo_env.settings, download_rate="1000/minute")
    state = build_state(settings, access_log=recorder)
    with TestClient(create_app(settings, state=state)) as c:
        yield c


def _all_rows(
    client: TestClient, root: str, fields: str, key: str | None = None, where: dict | None = None
) -> list[dict[str, Any]]:
    """The same dataset through /open/graphql, page by page: what a download must equal."""
    rows: list[dict[str, Any]] = []
    after = None
    headers = {"X-API-Key": key} if key else None
    wtype = root[0].upper() + root[1:] + "Where"
    while True:
        q = (
            f"query($after: String, $where: {wtype}) {{ {root}(first: 500, after: $after, where: $where) "
            f"{{ edges {{ node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        )
        body = gql(client, "open", q, variables={"after": after, "where": where}, headers=headers).json()
        assert "errors" not in body, body
        conn = body["data"][root]
        rows += [e["node"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            return rows
        after = conn["pageInfo"]["endCursor"]


def test_csv_has_a_bom_the_open_fields_and_the_open_tiers_values(
    app: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "BATCH", 300)  # several batches: the cursor carries on exactly
    r = app.get("/open/download/enterprise_registration.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="enterprise_registration.csv"' in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    text = r.content.decode("utf-8-sig")
    for word in RESTRICTED:
        assert word not in text
    table = list(csv.reader(io.StringIO(text)))
    header, rows = table[0], table[1:]
    assert "legalRepresentative" in header and "creditCode" in header
    expected = _all_rows(app, "enterpriseRegistration", " ".join(header))
    assert len(rows) == len(expected) > downloads.BATCH  # more than one batch
    got = [dict(zip(header, row, strict=True)) for row in rows]
    as_text = [{k: "" if v is None else str(v) for k, v in e.items()} for e in expected]
    assert got == as_text


def test_json_jsonl_and_xlsx_carry_the_same_rows(app: TestClient) -> None:
    csv_rows = list(
        csv.DictReader(
            io.StringIO(app.get("/open/download/air_quality_daily.csv").content.decode("utf-8-sig"))
        )
    )
    as_json = app.get("/open/download/air_quality_daily.json")
    assert as_json.headers["content-type"].startswith("application/json")
    doc = orjson.loads(as_json.content)
    lines = app.get("/open/download/air_quality_daily.jsonl").content.decode().splitlines()
    assert doc == [orjson.loads(x) for x in lines]
    assert len(doc) == len(csv_rows) > 0
    assert [str(d["city"]) for d in doc] == [r["city"] for r in csv_rows]

    from openpyxl import load_workbook

    x = app.get("/explore/datasets/air_quality_daily/download.xlsx")
    assert x.status_code == 200
    assert '</open/download/air_quality_daily.xlsx>; rel="canonical"' in x.headers["link"]
    sheet = load_workbook(io.BytesIO(x.content), read_only=True).active
    table = list(sheet.iter_rows(values_only=True))
    assert list(table[0]) == list(doc[0].keys())
    assert len(table) - 1 == len(doc)
    assert [row[list(doc[0]).index("city")] for row in table[1:]] == [d["city"] for d in doc]


def test_a_filter_and_an_order_are_the_open_tiers(app: TestClient) -> None:
    where = {"city": {"eq": "西安市"}}
    r = app.get(
        "/open/download/air_quality_daily.jsonl",
        params={
            "where": orjson.dumps(where).decode(),
            "orderBy": orjson.dumps([{"field": "AQI", "direction": "DESC"}]).decode(),
        },
    )
    assert r.status_code == 200, r.text
    rows = [orjson.loads(x) for x in r.content.decode().splitlines()]
    expected = _all_rows(app, "airQualityDaily", "city aqi", where=where)
    assert len(rows) == len(expected) > 0
    assert {row["city"] for row in rows} == {"西安市"}
    aqis = [row["aqi"] for row in rows if row["aqi"] is not None]
    assert aqis == sorted(aqis, reverse=True)


def test_bounded_pages_link_to_the_next_and_resume_exactly(app: TestClient) -> None:
    whole = app.get("/open/download/discharge_permit.jsonl").content.decode().splitlines()
    url: str | None = "/open/download/discharge_permit.jsonl?limit=70"
    pages: list[str] = []
    while url:
        r = app.get(url)
        assert r.status_code == 200
        lines = r.content.decode().splitlines()
        assert len(lines) <= 70
        pages += lines
        nxt = [p for p in r.headers["link"].split(", ") if 'rel="next"' in p]
        url = nxt[0].split(">")[0].lstrip("<") if nxt else None
    assert pages == whole and len(whole) > 70


def test_conditional_needs_a_grant_and_closed_datasets_do_not_exist(app: TestClient, demo_env: Any) -> None:
    anon = app.get("/open/download/tax_credit_rating.csv")
    assert anon.status_code == 403
    err = anon.json()["errors"][0]
    assert err["extensions"]["code"] == "FORBIDDEN" and "610000-TAX" in err["message"]
    key = demo_env.credentials["api_keys"]["demo-bank"]
    granted = app.get("/open/download/tax_credit_rating.jsonl", headers={"X-API-Key": key})
    assert granted.status_code == 200, granted.text
    rows = [orjson.loads(x) for x in granted.content.decode().splitlines()]
    fields = " ".join(rows[0])
    assert rows == _all_rows(app, "taxCreditRating", fields, key=key)
    for code in ("population", "social_insurance", "nope"):
        r = app.get(f"/open/download/{code}.csv")
        assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert (
        app.get("/open/download/tax_credit_rating.csv", headers={"X-API-Key": "sk_wrong"}).status_code == 401
    )


def test_bad_parameters_are_problems(app: TestClient) -> None:
    for params, code in [
        ({"where": "{"}, "BAD_REQUEST"),
        ({"where": '{"nope": {"eq": 1}}'}, "BAD_USER_INPUT"),
        ({"limit": "0"}, "BAD_REQUEST"),
        ({"after": "garbage"}, "BAD_USER_INPUT"),
        ({"where": '{"contactPhone": {"eq": "1"}}'}, "BAD_USER_INPUT"),
    ]:
        r = app.get("/open/download/enterprise_registration.csv", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["errors"][0]["extensions"]["code"] == code, (params, r.text)
    assert app.get("/open/download/enterprise_registration.pdf").status_code == 404


def test_one_start_and_one_end_event_with_rows_and_bytes(app: TestClient, recorder: Recorder) -> None:
    r = app.get("/open/download/discharge_permit.csv", headers={"X-Request-ID": "dl-audit-1"})
    assert r.status_code == 200
    events = [e for e in recorder.events if e.request_id == "dl-audit-1"]
    assert [e.operation_name for e in events] == ["download.start", "download.end"]
    start, end = events
    assert start.reads == [] and start.fields and start.status == 200
    assert end.status == 200 and end.error_codes == []
    (read,) = end.reads
    assert read["dataset"] == "discharge_permit" and read["format"] == "csv"
    assert read["rows"] == len(r.content.decode("utf-8-sig").splitlines()) - 1
    assert read["bytes"] == len(r.content)


def test_a_failure_mid_stream_is_recorded_with_the_rows_sent(
    app: TestClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "BATCH", 40)
    real = downloads.Downloads._run
    calls = {"n": 0}

    async def failing(self: Any, job: Any, after: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionResetError("database went away")
        return await real(self, job, after)

    monkeypatch.setattr(downloads.Downloads, "_run", failing)
    with pytest.raises(Exception):  # noqa: B017 - the transfer breaks; TestClient re-raises
        app.get("/open/download/discharge_permit.jsonl", headers={"X-Request-ID": "dl-broken"})
    events = [e for e in recorder.events if e.request_id == "dl-broken"]
    assert [e.operation_name for e in events] == ["download.start", "download.end"]
    end = events[1]
    assert end.status == 503 and end.error_codes == ["DATABASE_UNAVAILABLE"]
    assert end.reads[0]["rows"] == 80  # two batches went out before the third failed


def test_fails_closed_without_the_access_log_and_has_its_own_budget(demo_env: Any) -> None:
    rec = Recorder()
    rec.fail = True
    state = build_state(demo_env.settings, access_log=rec)
    with TestClient(create_app(demo_env.settings, state=state)) as c:
        r = c.get("/open/download/air_quality_daily.csv")
        assert r.status_code == 503 and r.json()["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
        assert "city" not in r.text
    settings = dataclasses.replace(demo_env.settings, download_rate="2/minute", anonymous_rate="1/minute")
    with TestClient(create_app(settings)) as c:
        got = [c.get("/open/download/air_quality_daily.jsonl?limit=1").status_code for _ in range(3)]
        assert got == [200, 200, 429]  # not the anonymous API's 1/minute: its own budget
        r = c.get("/open/download/air_quality_daily.jsonl?limit=1")
        assert r.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED" and "Retry-After" in r.headers
        assert gql(c, "open", "{ airQualityDaily(first: 1) { totalCount } }").status_code == 200


def test_xlsx_stops_at_the_sheet_limit_and_says_so(
    app: TestClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openpyxl import load_workbook

    monkeypatch.setattr(downloads, "XLSX_MAX_ROWS", 30)
    monkeypatch.setattr(downloads, "BATCH", 20)
    r = app.get("/open/download/discharge_permit.xlsx", headers={"X-Request-ID": "dl-xlsx-cut"})
    assert r.status_code == 200
    table = list(load_workbook(io.BytesIO(r.content), read_only=True).active.iter_rows(values_only=True))
    assert len(table) == 1 + 30 + 1 and "已截断" in str(table[-1][0])
    end = [e for e in recorder.events if e.request_id == "dl-xlsx-cut"][-1]
    assert end.error_codes == ["XLSX_ROW_LIMIT"] and end.reads[0]["rows"] == 30


def test_an_empty_result_is_still_a_valid_file(app: TestClient) -> None:
    none = orjson.dumps({"city": {"eq": "不存在的城市"}}).decode()
    assert (
        orjson.loads(app.get("/open/download/air_quality_daily.json", params={"where": none}).content) == []
    )
    csv_body = app.get("/open/download/air_quality_daily.csv", params={"where": none}).content
    assert csv_body.decode("utf-8-sig").count("\n") == 1  # the header only
    assert app.get("/open/download/air_quality_daily.jsonl", params={"where": none}).content == b""


def test_a_client_that_goes_away_is_recorded_as_aborted(app: TestClient, recorder: Recorder) -> None:
    """Straight through the ASGI app: the client's socket fails after the first chunk."""
    asgi = app.app
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/open/download/discharge_permit.jsonl",
            "raw_path": b"/open/download/discharge_permit.jsonl",
            "query_string": b"",
            "root_path": "",
            "server": ("testserver", 80),
            "client": ("10.9.9.9", 5000),
            "headers": [(b"host", b"testserver"), (b"x-request-id", b"dl-gone")],
        }

        async def receive() -> dict[str, Any]:
            import anyio

            await anyio.sleep(3600)  # the request has no body; the client never says more
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                raise OSError("connection reset by peer")

        with contextlib.suppress(OSError):
            await asgi(scope, receive, send)

    app.portal.call(call)  # type: ignore[attr-defined]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200, sent
    events = recorder.events[-2:]  # (the request id is the gateway's own: this client is not trusted)
    assert events[0].request_id == events[1].request_id
    assert [e.operation_name for e in events] == ["download.start", "download.end"]
    assert events[1].status == 499 and events[1].error_codes == ["DOWNLOAD_ABORTED"]


def test_head_answers_the_headers(app: TestClient, recorder: Recorder) -> None:
    r = app.head("/open/download/air_quality_daily.csv?limit=5", headers={"X-Request-ID": "dl-head-1"})
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="air_quality_daily.csv"'
    # recorded as what it was, and not a download in the usage statistics
    events = [e for e in recorder.events if e.request_id == "dl-head-1"]
    assert [(e.operation_name, e.status) for e in events] == [("download.head", 200)]
    detail = orjson.dumps({"reads": [{"dataset": "air_quality_daily"}]}).decode()
    now = datetime.now(UTC)
    assert tally([(now, "download.head", 200, detail)]) == {}
    assert tally([(now, "download.end", 200, detail)]) != {}
    assert app.head("/open/download/no_such_dataset.csv").status_code == 404
