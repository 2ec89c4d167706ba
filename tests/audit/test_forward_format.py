"""The syslog messages the forwarder sends: RFC 5424 by a strict parser of the tests' own, values
escaped as §6.3.3 asks, octet-counted frames (RFC 5425), and the JSON-lines form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from gateway.audit.forward import parse_target
from gateway.audit.syslog_format import (
    DOCUMENTATION_PEN,
    SyslogFormat,
    escape_param_value,
    header_token,
    json_line,
    octet_counted,
)
from tests.audit.rfc5424 import Invalid, parse, split_octet_counted

NASTY = 'a"b\\c]d [x@1 y="z"] 中文 é'


def event(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "seq": 42,
        "occurred_at": "2026-12-03T06:40:01.123456Z",
        "request_id": "req-1",
        "tier": "share",
        "principal_kind": "department",
        "principal_id": "hrss-client",
        "department": "hrss",
        "subject": None,
        "client_address": "10.0.0.7",
        "operation_name": "People",
        "operation_type": "query",
        "query_digest": "ab" * 32,
        "status": 200,
        "error_codes": [],
        "latency_ms": 3.5,
        "row_count": 2,
        "fields": [
            {"dataset": "population", "field": "idNumber", "action": "encrypt"},
            {"dataset": "population", "field": "name", "action": "allow"},
        ],
        "reads": [{"dataset": "population", "rows": 2, "grant_id": 7, "purpose": "社保待遇资格认证"}],
        "grant_ids": [7],
        "purposes": ["社保待遇资格认证"],
        "signature_kid": None,
        "prev_hash": "00" * 32,
        "hash": "11" * 32,
    }
    return doc | changes


def alert(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": 9,
        "rule": "forbidden_probing",
        "principal_id": "samr-client",
        "consumer": "samr",
        "seq": 40,
        "occurred_at": "2026-12-03T06:40:00.000001Z",
        "raised_at": "2026-12-03T06:40:02.5Z",
        "summary": "20 FORBIDDEN_FIELD denials in 600 s",
        "detail": {"denials": 20},
        "acknowledged_at": None,
        "acknowledged_by": None,
        "ack_comment": None,
    }
    return doc | changes


FMT = SyslogFormat("gw-1.example", "4711")


def test_an_event_is_rfc5424_with_its_id_and_the_event_as_json() -> None:
    m = parse(FMT.event(event()))
    assert (m.version, m.facility, m.severity) == (1, 13, 6)  # log audit, informational
    assert (m.hostname, m.app, m.procid, m.msgid) == ("gw-1.example", "shuqiao", "4711", "audit-event")
    assert m.timestamp == "2026-12-03T06:40:01.123456Z"
    sd = f"shuqiao@{DOCUMENTATION_PEN}"
    assert list(m.sd) == [sd]
    assert m.sd[sd][0] == ("id", "event:42")
    assert m.param(sd, "hash") == "11" * 32
    assert m.param(sd, "fields") == "population.idNumber:encrypt population.name:allow"
    assert m.param(sd, "purposes") == "社保待遇资格认证"
    assert m.param(sd, "subject") is None  # None is left out, not "None"
    assert orjson.loads(m.text()) == event()


@pytest.mark.parametrize(("status", "severity"), [(200, 6), (403, 5), (404, 5), (503, 3)])
def test_severity_follows_the_answer(status: int, severity: int) -> None:
    assert parse(FMT.event(event(status=status))).severity == severity


def test_an_alert_is_a_warning_with_its_own_sd_id() -> None:
    m = parse(SyslogFormat("gw", pen=12345).alert(alert()))
    assert (m.severity, m.msgid, m.timestamp) == (4, "audit-alert", "2026-12-03T06:40:02.500000Z")
    assert m.param("shuqiaoAlert@12345", "id") == "alert:9"
    assert m.param("shuqiaoAlert@12345", "rule") == "forbidden_probing"
    assert orjson.loads(m.text())["summary"] == alert()["summary"]


def test_quotes_backslashes_and_brackets_in_values_are_escaped_and_round_trip() -> None:
    assert escape_param_value('"\\]') == '\\"\\\\\\]'
    doc = event(principal_id=NASTY, subject=NASTY, operation_name="]]]", request_id='\\"')
    m = parse(FMT.event(doc))
    sd = f"shuqiao@{DOCUMENTATION_PEN}"
    assert m.param(sd, "principalId") == NASTY
    assert m.param(sd, "subject") == NASTY
    assert m.param(sd, "operation") == "]]]"
    assert m.param(sd, "requestId") == '\\"'


def test_the_strict_parser_refuses_what_the_rfc_forbids() -> None:
    with pytest.raises(Invalid):
        parse(b'<110>1 - h a p m [x@1 k="a]b"] msg')  # unescaped ]
    with pytest.raises(Invalid):
        parse(b'<110>1 - h a p m [x k="v"] msg')  # an unregistered SD-ID without @
    with pytest.raises(Invalid):
        parse(b"<192>1 - h a p m - msg")


@pytest.mark.parametrize(
    ("value", "expected"), [("gw 1", "gw_1"), ("", "-"), (None, "-"), ("主机", "__"), ("x" * 300, "x" * 255)]
)
def test_header_fields_are_printable_ascii_without_spaces(value: str | None, expected: str) -> None:
    assert header_token(value, 255) == expected


def test_a_message_over_the_limit_keeps_its_structured_data_and_drops_the_field_list() -> None:
    many = [{"dataset": "population", "field": f"f{i}", "action": "allow"} for i in range(400)]
    fmt = SyslogFormat("gw", max_bytes=2048)
    data = fmt.event(event(fields=many))
    assert len(data) <= 2048
    m = parse(data)
    sd = f"shuqiao@{DOCUMENTATION_PEN}"
    assert m.param(sd, "id") == "event:42"
    assert m.param(sd, "truncated") == "1"
    assert m.param(sd, "fields") is None
    body = orjson.loads(m.text())
    assert body["truncated"] is True and "fields" not in body and body["hash"] == "11" * 32


def test_octet_counting_frames_split_back_into_the_messages() -> None:
    messages = [FMT.event(event(seq=i, principal_id=NASTY)) for i in range(1, 6)] + [FMT.alert(alert())]
    stream = b"".join(octet_counted(m) for m in messages)
    assert split_octet_counted(stream) == messages
    assert octet_counted(b"abc") == b"3 abc"


def test_json_lines_carry_the_type_and_id() -> None:
    line = json_line("event", event())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = orjson.loads(line)
    assert (doc["type"], doc["id"], doc["seq"]) == ("event", "event:42", 42)
    assert orjson.loads(json_line("alert", alert()))["id"] == "alert:9"


def test_timestamps_are_utc_with_microseconds() -> None:
    m = parse(FMT.event(event(occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat())))
    assert m.timestamp == "2026-01-02T03:04:05.000000Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("soc.example:6514", ("soc.example", 6514)),
        ("soc.example", ("soc.example", 6514)),
        ("[::1]:1514", ("::1", 1514)),
    ],
)
def test_targets(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["soc:0", "soc:x", ":6514", "soc:70000"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SHUQIAO_AUDIT_SYSLOG_TARGET"):
        parse_target(text)
