"""An investigation's events as one signed file that verifies offline: what an officer hands to an
inquiry (a citizen's data-access request, a disciplinary case) without access to the gateway.

    line 1      {"format": "shuqiao-audit-bundle/v1", "created_at", "kid", "investigation": {...},
                 "events": N, "chain": {"head_seq", "verified": true, "checkpoint": {...} | null}}
    lines 2..N+1 one stored event each, every column (query variables stay sealed), seq ascending
    last line   {"signature": "<hex DER SM2 signature>"}

Every line is canonical JSON (sorted keys). The signature is SM2/SM3 (signer ID
1234567812345678) by the gateway key `kid` over b"shuqiao-audit-bundle/v1\\n" followed by every
byte before the last line. `verify_bundle` checks, with the public key alone: the signature, that
each event's hash is the SM3 of its own columns (as the chain computes it), that seqs ascend
without repeats and the count matches, and that the checkpoint carried as chain material is signed
by the same key.

What it proves: these are the events, unaltered, that the gateway's chain held when it exported
them (the export first verified the chain and refuses a broken one), attested by its key. It does
not carry the events between them, so membership in the chain rests on that signature, not on a
hash path (the chain is linear: a path to a checkpoint would need every event in between)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import canonical_time, event_hash
from gateway.audit.checkpoints import (
    EVENT_COLUMNS,
    EVENTS,
    Checkpoint,
    _event_doc,
    _line,
    _parse_time,
    latest_checkpoint,
)
from gateway.audit.verify import verify_chain
from keys import sm2
from keys.keystore import KeyStore, key_id
from keys.sm2 import SM2PublicKey

FORMAT = "shuqiao-audit-bundle/v1"
DOMAIN = b"shuqiao-audit-bundle/v1\n"
SIGNER_ID = b"1234567812345678"
MAX_EVENTS = 200_000


class BundleError(Exception):
    pass


async def build_bundle(
    engine: AsyncEngine, store: KeyStore, seqs: list[int], investigation: dict[str, Any]
) -> bytes:
    """The signed bundle of the events `seqs` (duplicates dropped, in seq order). Refused when
    the chain does not verify (nothing signed as if it held), or with more than MAX_EVENTS."""
    wanted = sorted(set(seqs))
    if len(wanted) > MAX_EVENTS:
        raise BundleError(f"{len(wanted)} events: a bundle holds at most {MAX_EVENTS}; narrow the period")
    report = await verify_chain(engine)
    if not report.ok:
        raise BundleError(f"the chain does not verify at seq {report.first_bad_seq}: {report.reason}")
    info, private = store.current()
    rows: list[dict[str, Any]] = []
    async with engine.connect() as conn:
        for i in range(0, len(wanted), 1000):
            chunk = wanted[i : i + 1000]
            found = await conn.execute(select(EVENTS).where(EVENTS.c.seq.in_(chunk)).order_by(EVENTS.c.seq))
            rows.extend(_event_doc(r) for r in found.mappings())
        head = (await conn.execute(select(func.max(EVENTS.c.seq)))).scalar() or 0
        checkpoint = await latest_checkpoint(conn)
    header = {
        "format": FORMAT,
        "created_at": canonical_time(datetime.now(UTC)),
        "kid": info.kid,
        "investigation": investigation,
        "events": len(rows),
        "chain": {
            "head_seq": int(head),
            "verified": True,
            "checkpoint": checkpoint.to_json() if checkpoint else None,
        },
    }
    body = _line(header) + b"".join(_line(r) for r in rows)
    signature = sm2.sign(private, DOMAIN + body, uid=SIGNER_ID).hex()
    return body + _line({"signature": signature})


@dataclass
class BundleReport:
    ok: bool
    events: int = 0
    kid: str | None = None
    reason: str | None = None
    investigation: dict[str, Any] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "kid": self.kid,
            "reason": self.reason,
            "investigation": self.investigation,
            "first_seq": self.seqs[0] if self.seqs else None,
            "last_seq": self.seqs[-1] if self.seqs else None,
        }


def is_bundle(data: bytes) -> bool:
    return data.startswith(b"{") and f'"format":"{FORMAT}"'.encode() in data.split(b"\n", 1)[0]


def verify_bundle(data: bytes, public_key: SM2PublicKey) -> BundleReport:
    """Offline, with the gateway's public key only. Any changed byte fails."""
    try:
        return _verify(data, public_key)
    except Exception as err:  # malformed input of any kind is a failed verification
        return BundleReport(False, reason=f"malformed bundle: {type(err).__name__}")


def _verify(data: bytes, public_key: SM2PublicKey) -> BundleReport:
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"":
        return BundleReport(False, reason="not a complete bundle (header, events, signature)")
    docs = []
    for n, raw in enumerate(lines[:-1], 1):
        doc = orjson.loads(raw)
        if orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) != raw:
            return BundleReport(False, reason=f"line {n} is not in canonical form")
        docs.append(doc)
    header, events, tail = docs[0], docs[1:-1], docs[-1]
    if header.get("format") != FORMAT or set(header) != {
        "format", "created_at", "kid", "investigation", "events", "chain",
    }:  # fmt: skip
        return BundleReport(False, reason=f"not a {FORMAT} header")
    report = BundleReport(False, kid=header["kid"], investigation=header["investigation"])
    if header["kid"] != key_id(public_key):
        report.reason = f"bundle signed by key {header['kid']}, not by this public key"
        return report
    if set(tail) != {"signature"}:
        report.reason = "no signature at the end"
        return report
    signed = b"\n".join(lines[:-2]) + b"\n"
    if not sm2.verify(public_key, DOMAIN + signed, bytes.fromhex(tail["signature"]), uid=SIGNER_ID):
        report.reason = "the signature does not verify"
        return report
    previous = 0
    for doc in events:
        if set(doc) != set(EVENT_COLUMNS):
            report.reason = f"seq {doc.get('seq')}: unexpected columns"
            return report
        if doc["seq"] <= previous:
            report.reason = f"seq {doc['seq']}: out of order or repeated"
            return report
        row = {**doc, "occurred_at": _parse_time(doc["occurred_at"])}
        if canonical_time(row["occurred_at"]) != doc["occurred_at"] or event_hash(row) != doc["hash"]:
            report.reason = f"seq {doc['seq']}: hash mismatch"
            return report
        previous = doc["seq"]
        report.seqs.append(previous)
    if len(events) != header["events"]:
        report.reason = "the event count differs from the header's"
        return report
    cp = header["chain"].get("checkpoint")
    if cp is not None and not Checkpoint(**cp).verify(public_key):
        report.reason = "the chain checkpoint's signature does not verify"
        return report
    report.ok, report.events = True, len(events)
    return report


async def investigation_seqs(
    engine: AsyncEngine, params: dict[str, str], master_key: bytes | None
) -> tuple[list[int], dict[str, Any]]:
    """The events of one investigation, and how it is described in the bundle's header:
    view=consumer (code=), view=person (id_number=; the number itself is not written into the
    bundle), or view=search (the event search's filters); from= / to= as the views take them
    (person: the last year by default, the others the last day)."""
    from datetime import timedelta

    from gateway.audit import investigate, query
    from gateway.audit.posture import Period

    view = params.get("view") or "search"
    if view == "person":
        from catalogue.protection import PoolKeyring

        id_number = (params.get("id_number") or "").strip()
        if not id_number:
            raise query.BadFilter("id_number is the 身份证号 to look for")
        if master_key is None:
            raise BundleError("the person view needs the master key")
        with_default = {"from": (datetime.now(UTC) - timedelta(days=366)).isoformat(), **params}
        period = Period.from_params(with_default)
        keyring = await PoolKeyring(master_key).load(engine)
        async with engine.connect() as conn:
            doc = await investigate.person_view(conn, keyring, id_number, period)
        seqs = [r["seq"] for r in doc["reads"]]
        return seqs, {"view": "person", "from": doc["from"], "to": doc["to"], "datasets": doc["datasets"]}
    if view == "consumer":
        code = (params.get("code") or "").strip()
        if not code:
            raise query.BadFilter("code is the department or enterprise code, e.g. hrss")
        period = Period.from_params(params)
        f = query.Filters(since=period.since, until=period.until, department=code)
        described: dict[str, Any] = {"view": "consumer", "code": code, **period.search()}
    elif view == "search":
        f = query.Filters.from_params(params)
        described = {"view": "search", "filters": f.as_params()}
    else:
        raise query.BadFilter("view is consumer, person or search")
    if f.uses_index:
        from gateway.audit.field_index import index_pending

        await index_pending(engine)
    async with engine.connect() as conn:
        rows = await conn.execute(select(EVENTS.c.seq).where(*query.where(conn, f)).order_by(EVENTS.c.seq))
        return [int(s) for (s,) in rows], described
