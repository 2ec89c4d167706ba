"""Audit events and alerts as syslog messages (RFC 5424), framed for TCP/TLS (RFC 5425 octet
counting), and as JSON lines for log shippers. No I/O: the forwarder (gateway.audit.forward)
reads the rows and sends what this module makes.

One message per event or alert:

    <PRI>1 TIMESTAMP HOSTNAME shuqiao PROCID MSGID [SD-ELEMENT] BOM{JSON}

PRI: facility 13 ("log audit") × 8 + severity: an event answered < 400 is 6 (informational), a
refusal (4xx) 5 (notice), a failure (5xx) 3 (error); an alert 4 (warning). TIMESTAMP is the
event's `occurred_at` (the alert's `raised_at`), UTC with microseconds. MSGID `audit-event` or
`audit-alert`. One SD-ELEMENT, `shuqiao@<PEN>` for an event and `shuqiaoAlert@<PEN>` for an alert
(PEN: the operator's IANA private enterprise number, SHUQIAO_AUDIT_SYSLOG_PEN; the default 32473
is the number RFC 5612 reserves for documentation). Its first parameter `id` (`event:<seq>` /
`alert:<id>`) identifies the message: delivery is at least once, so a receiver that sees an id
twice drops the second. The MSG is the event as `shuqiao audit export --format json` writes it
(never the sealed variables), or the alert as the officer API lists it: UTF-8 JSON after a BOM.
A message over `max_bytes` keeps its structured data and carries the JSON without `fields` and
`reads`, marked `"truncated": true` (and `truncated="1"` in the SD-ELEMENT)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

FACILITY_LOG_AUDIT = 13
SEVERITY_ERROR, SEVERITY_WARNING, SEVERITY_NOTICE, SEVERITY_INFO = 3, 4, 5, 6
APP_NAME = "shuqiao"
DOCUMENTATION_PEN = 32473  # RFC 5612: for examples; deployments set their own
DEFAULT_MAX_BYTES = 8192  # RFC 5425: receivers SHOULD accept 8192 octets (rsyslog's default)
BOM = "\ufeff".encode()
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def escape_param_value(value: str) -> str:
    """RFC 5424 §6.3.3: inside PARAM-VALUE, '"', '\\' and ']' are escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str | None, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, PROCID, MSGID): printable US-ASCII, no space, at most
    `limit` octets; anything else becomes "_", nothing at all the NILVALUE "-"."""
    if not value:
        return "-"
    return _NOT_PRINTABLE.sub("_", value)[:limit]


def syslog_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def structured_element(sd_id: str, params: list[tuple[str, Any]]) -> str:
    """`[SD-ID name="value" ...]`, parameters whose value is None left out."""
    parts = [sd_id]
    for name, value in params:
        if value is None:
            continue
        parts.append(f'{name}="{escape_param_value(str(value))}"')
    return "[" + " ".join(parts) + "]"


def event_severity(status: int) -> int:
    if status >= 500:
        return SEVERITY_ERROR
    if status >= 400:
        return SEVERITY_NOTICE
    return SEVERITY_INFO


class SyslogFormat:
    """How this gateway names itself in the messages: hostname, process id, enterprise number,
    the size a receiver accepts."""

    def __init__(
        self,
        hostname: str,
        procid: str | None = None,
        pen: int = DOCUMENTATION_PEN,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.hostname = header_token(hostname, 255)
        self.procid = header_token(procid, 128)
        self.pen = int(pen)
        self.max_bytes = max_bytes

    def event(self, doc: Mapping[str, Any]) -> bytes:
        """One event (`gateway.audit.query.event_doc` without `has_variables`)."""
        fields = " ".join(
            f"{f.get('dataset')}.{f.get('field')}:{f.get('action')}" for f in doc.get("fields", [])
        )
        datasets = sorted({str(r["dataset"]) for r in doc.get("reads", []) if r.get("dataset")})
        params: list[tuple[str, Any]] = [
            ("id", f"event:{doc['seq']}"),
            ("seq", doc["seq"]),
            ("hash", doc["hash"]),
            ("prevHash", doc["prev_hash"]),
            ("requestId", doc["request_id"] or None),
            ("tier", doc["tier"]),
            ("principalKind", doc["principal_kind"]),
            ("principalId", doc["principal_id"]),
            ("consumer", doc.get("department")),
            ("subject", doc.get("subject")),
            ("clientAddress", doc.get("client_address")),
            ("operation", doc.get("operation_name")),
            ("operationType", doc.get("operation_type")),
            ("status", doc["status"]),
            ("rows", doc.get("row_count")),
            ("errors", " ".join(doc.get("error_codes", [])) or None),
            ("datasets", ",".join(datasets) or None),
            ("fields", fields or None),
            ("grants", " ".join(str(g) for g in doc.get("grant_ids", [])) or None),
            ("purposes", "; ".join(doc.get("purposes", [])) or None),
        ]
        return self._message(
            severity=event_severity(int(doc["status"])),
            timestamp=doc["occurred_at"],
            msgid="audit-event",
            sd_id=f"shuqiao@{self.pen}",
            params=params,
            doc=doc,
        )

    def alert(self, doc: Mapping[str, Any]) -> bytes:
        """One alert (`gateway.audit.alerts.alert_json`)."""
        params: list[tuple[str, Any]] = [
            ("id", f"alert:{doc['id']}"),
            ("alertId", doc["id"]),
            ("rule", doc["rule"]),
            ("seq", doc["seq"]),
            ("principalId", doc["principal_id"]),
            ("consumer", doc.get("consumer")),
            ("occurredAt", doc["occurred_at"]),
        ]
        return self._message(
            severity=SEVERITY_WARNING,
            timestamp=doc["raised_at"],
            msgid="audit-alert",
            sd_id=f"shuqiaoAlert@{self.pen}",
            params=params,
            doc=doc,
        )

    def _message(
        self,
        *,
        severity: int,
        timestamp: str | datetime,
        msgid: str,
        sd_id: str,
        params: list[tuple[str, Any]],
        doc: Mapping[str, Any],
    ) -> bytes:
        when = syslog_time(
            timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(timestamp)
        )
        head = (
            f"<{FACILITY_LOG_AUDIT * 8 + severity}>1 {when} {self.hostname} {APP_NAME} {self.procid} {msgid} "
        )
        message = (head + structured_element(sd_id, params) + " ").encode() + BOM + orjson.dumps(doc)
        if len(message) <= self.max_bytes:
            return message
        short = {k: v for k, v in doc.items() if k not in ("fields", "reads")} | {"truncated": True}
        sd = structured_element(sd_id, [*((n, v) for n, v in params if n != "fields"), ("truncated", 1)])
        return (head + sd + " ").encode() + BOM + orjson.dumps(short)


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 §4.3 (and RFC 6587 §3.4.1): MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


def json_line(kind: str, doc: Mapping[str, Any]) -> bytes:
    """One line for a log shipper: {"type": "event"|"alert", "id": "event:<seq>"|"alert:<id>", ...}
    (an alert's own number moves to `alert_id`)."""
    if kind == "event":
        return orjson.dumps({"type": kind, "id": f"event:{doc['seq']}", **doc}) + b"\n"
    return orjson.dumps({**doc, "type": kind, "id": f"alert:{doc['id']}", "alert_id": doc["id"]}) + b"\n"
