"""Tamper-evident audit log: every access event appended to an SM3 hash chain.

Public API: `AuditEvent`, `AuditChainHead` (tables), `ChainedAuditLog` (the `AccessLog` sink),
`verify_chain` / `VerifyReport`, and `event_hash` / `canonical_bytes` (the documented hash input).

Imported on first use (PEP 562), so that a submodule can be loaded without the rest: SQLite's
writer process (gateway.audit.sqlite_writer) needs the chain's hashing, not SQLAlchemy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.audit.chain import GENESIS_HASH, canonical_bytes, event_hash
    from gateway.audit.models import AuditChainHead, AuditEvent, AuditFieldAccess
    from gateway.audit.store import ChainedAuditLog
    from gateway.audit.variables import VariableCipher
    from gateway.audit.verify import VerifyReport, verify_chain

_EXPORTS = {
    "GENESIS_HASH": "chain",
    "canonical_bytes": "chain",
    "event_hash": "chain",
    "AuditChainHead": "models",
    "AuditEvent": "models",
    "AuditFieldAccess": "models",
    "ChainedAuditLog": "store",
    "VariableCipher": "variables",
    "VerifyReport": "verify",
    "verify_chain": "verify",
}

__all__ = [
    "GENESIS_HASH",
    "AuditChainHead",
    "AuditEvent",
    "AuditFieldAccess",
    "ChainedAuditLog",
    "VariableCipher",
    "VerifyReport",
    "canonical_bytes",
    "event_hash",
    "verify_chain",
]
assert sorted(__all__) == sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
