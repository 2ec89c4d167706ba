"""Everything the executor needs to know about one request, filled in by the gateway."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from catalogue.protection import PoolKeyring
from catalogue.spec import DatasetSpec, FieldSpec
from policies.limits import Limits
from policies.model import Action, Grant, Tier
from policies.watermark import DEFAULT_GAMMA, SCHEME, MarkKey, watermark_id


class PrincipalKind(StrEnum):
    ANONYMOUS = "anonymous"
    ENTERPRISE = "enterprise"
    DEPARTMENT = "department"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: str  # OAuth client id, API-key prefix, or "anonymous": safe to log
    consumer: str | None = None  # department code (share tier) or enterprise code (open tier)
    scopes: frozenset[str] = frozenset()
    subject: str | None = None  # a person behind the token, when there is one


ANONYMOUS = Principal(PrincipalKind.ANONYMOUS, "anonymous")

# Encrypts one clear value of a field for the consumer; returns the compact envelope string.
Encryptor = Callable[[DatasetSpec, FieldSpec, Any], str]


@dataclass(frozen=True, slots=True)
class Watermarking:
    """Mark values delivered to this identified recipient (policies.watermark). The recipient
    is the consumer — the department on the share tier, the enterprise on the open tier — not
    the client or API key, so every key of one enterprise gets the same marks."""

    key: MarkKey
    recipient: str
    gamma: float = DEFAULT_GAMMA

    def evidence(self, fields: list[str]) -> dict[str, Any]:
        """What the audit log records: ids and parameters, never the secret."""
        return {
            "id": watermark_id(self.key.kid, self.recipient),
            "scheme": SCHEME,
            "kid": self.key.kid,
            "recipient": self.recipient,
            "gamma": self.gamma,
            "fields": fields,
        }


@dataclass(slots=True)
class FieldAccess:
    """One (dataset, field) decision as it was applied: what the audit log records."""

    dataset: str
    field: str
    action: Action
    reason: str
    grant_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "field": self.field,
            "action": self.action.value,
            "reason": self.reason,
            "grant_id": self.grant_id,
        }


@dataclass(slots=True)
class DatasetRead:
    dataset: str
    rows: int
    grant_id: int | None = None  # the oldest of the grants read under (all of them: grant_ids)
    purpose: str | None = None  # their declared purposes, "; "-joined
    grant_ids: tuple[int, ...] = ()  # every active grant of the consumer on the dataset (they combine)
    # Blind-index values (catalogue.protection: HMAC-SM3 under the dataset's index key, never the
    # clear value) of the protected keys looked up — entity keys, equality filters on an encrypted
    # field — so the audit log can answer "who read this 身份证号's records" without holding it.
    keys: tuple[str, ...] = ()
    watermark: dict[str, Any] | None = None  # Watermarking.evidence of the marked fields read

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "rows": self.rows,
            "grant_id": self.grant_id,
            "purpose": self.purpose,
        }
        if len(self.grant_ids) > 1:
            out["grant_ids"] = list(self.grant_ids)
        if self.keys:
            out["keys"] = sorted(self.keys)
        if self.watermark is not None:
            out["watermark"] = self.watermark
        return out


@dataclass
class ExecutionContext:
    tier: Tier
    principal: Principal
    grants: tuple[Grant, ...]
    now: datetime
    limits: Limits
    encryptor: Encryptor | None = None  # None: the encrypt action is unavailable, so it denies
    pool: PoolKeyring | None = None  # data keys for columns encrypted at rest
    watermark: Watermarking | None = None  # None: an anonymous caller, or marking is off
    accesses: dict[tuple[str, str], FieldAccess] = field(default_factory=dict)
    reads: list[DatasetRead] = field(default_factory=list)

    def record(self, access: FieldAccess) -> None:
        self.accesses.setdefault((access.dataset, access.field), access)
