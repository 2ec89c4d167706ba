"""The master secret: from SHUQIAO_MASTER_KEY (hex) or a file outside the database.

Everything keyed (secret hashes, API-key hashes) derives from it, so a stolen database
alone cannot be used to test guesses offline."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from keys.sm3 import hmac_sm3, verify_hmac_sm3


class MasterKeyMissing(RuntimeError):
    pass


def load_master_key(path: Path, *, create: bool = False) -> bytes:
    env = os.environ.get("SHUQIAO_MASTER_KEY")
    if env:
        return bytes.fromhex(env)
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    if not create:
        raise MasterKeyMissing(f"no master key: set SHUQIAO_MASTER_KEY or run `shuqiao init` ({path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


class SecretHasher:
    """Keyed hashes (HMAC-SM3) for high-entropy secrets: client secrets and API keys.
    They are random 256-bit values, so a keyed hash is enough; passwords need a KDF."""

    def __init__(self, master_key: bytes) -> None:
        self._key = hmac_sm3(master_key, b"shuqiao/secret-hash/v1")

    def hash(self, secret: str) -> str:
        return hmac_sm3(self._key, secret.encode()).hex()

    def verify(self, secret: str, hashed: str) -> bool:
        try:
            return verify_hmac_sm3(self._key, secret.encode(), bytes.fromhex(hashed))
        except ValueError:
            return False
