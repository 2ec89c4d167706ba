"""Tamper-evident audit log: every access event appended to an SM3 hash chain.

Public API: `AuditEvent`, `AuditChainHead` (tables), `ChainedAuditLog` (the `AccessLog` sink),
`verify_chain` / `VerifyReport`, and `event_hash` / `canonical_bytes` (the documented hash input)."""

from gateway.audit.chain import GENESIS_HASH, canonical_bytes, event_hash
from gateway.audit.models import AuditChainHead, AuditEvent, AuditFieldAccess
from gateway.audit.store import ChainedAuditLog
from gateway.audit.variables import VariableCipher
from gateway.audit.verify import VerifyReport, verify_chain

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
