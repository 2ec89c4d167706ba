"""Query variables at rest: SM4-GCM sealed, readable to officers through the audit tools only.

Variables can carry citizen ID numbers (`person(idNumber: $id)`), so the audit log never stores
them in clear. The key is derived from the gateway master key (HMAC-SM3 with a fixed label), so
it is not in the database; the request id is bound in as GCM AAD, so a sealed blob cannot be
moved to another event. Stored form: "sm4gcm.v1." + base64url(nonce ‖ ciphertext ‖ tag)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from keys import sm4
from keys.sm3 import hmac_sm3

PREFIX = "sm4gcm.v1."
LABEL = b"shuqiao/audit-variables/v1"


class VariableCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != sm4.KEY_SIZE:
            raise ValueError("the variables key is a 16-byte SM4 key")
        self._key = key

    @classmethod
    def from_master_key(cls, master_key: bytes) -> VariableCipher:
        return cls(hmac_sm3(master_key, LABEL)[: sm4.KEY_SIZE])

    def seal(self, request_id: str, variables: dict[str, Any] | None) -> str | None:
        if not variables:
            return None
        blob = sm4.encrypt(self._key, orjson.dumps(variables), aad=request_id.encode())
        return PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, request_id: str, sealed: str | None) -> dict[str, Any] | None:
        """The clear variables; raises keys.errors.DecryptionError if the blob was altered or moved."""
        if not sealed:
            return None
        if not sealed.startswith(PREFIX):
            raise ValueError("not a sealed-variables value")
        data = sealed[len(PREFIX) :]
        blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return orjson.loads(sm4.decrypt(self._key, blob, aad=request_id.encode()))
