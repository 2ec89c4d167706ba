"""SM2 in pure Python: gmssl's curve arithmetic, our protocol code.

gmssl 3.2 (``CryptSM2``) supplies the scalar multiplication; we do not use its
``encrypt``/``decrypt``/``sign_with_sm3`` because they are unsafe as shipped:
nonces come from ``random.choice`` (not a CSPRNG), ``decrypt`` never compares
C3 (tampered ciphertext yields garbage, not an error), public keys go through
``str.lstrip("04")`` (corrupting any x that starts with hex 0 or 4), and
signature r, s are not range-checked. So nonces come from ``secrets``, the
public key is set directly, and C3, ranges and points are checked here.

Not constant-time (Python big integers): a fallback for platforms without
Tongsuo, not for hosts where an attacker can time the signer.
"""

from __future__ import annotations

import hmac
import secrets

try:
    from gmssl.sm2 import CryptSM2
except ImportError as exc:  # pragma: no cover - gmssl is a hard dependency
    raise ImportError(f"gmssl unavailable: {exc}") from exc

from keys.errors import DecryptionError
from keys.sm2 import gmt0009
from keys.sm2.gbt32918 import COORD_SIZE, GX, GY, N, is_on_curve, kdf
from keys.sm2.key import SM2PrivateKey, SM2PublicKey
from keys.sm3 import sm3


def _hex2(a: int, b: int) -> str:
    """gmssl's point / signature text form: two 64-digit hex numbers."""
    return f"{a:064x}{b:064x}"


_G = _hex2(GX, GY)


def _curve(private_hex: str = "", public_hex: str = "") -> CryptSM2:
    curve = CryptSM2(private_key=private_hex, public_key="")
    curve.public_key = public_hex  # bypass the lstrip("04") bug in __init__
    return curve


_ARITH = _curve()


def _mul(k: int, point_hex: str) -> tuple[int, int]:
    """k·P for 1 ≤ k < n and P a valid point (gmssl's _kg returns P itself for k = 0)."""
    xy = _ARITH._kg(k, point_hex)
    if xy is None:  # point at infinity: impossible for valid inputs
        raise ValueError("SM2 scalar multiplication hit infinity")
    return int(xy[:64], 16), int(xy[64:], 16)


def _b(value: int) -> bytes:
    return value.to_bytes(COORD_SIZE, "big")


def _signer(key: SM2PrivateKey) -> CryptSM2:
    native = key._native.get("gmssl")
    if native is None:
        native = _curve(f"{key.private_value:064x}", _hex2(key.public_key.x, key.public_key.y))
        key._native["gmssl"] = native
    return native


class GmsslBackend:
    name = "gmssl"

    def generate(self) -> SM2PrivateKey:
        d = secrets.randbelow(N - 2) + 1  # [1, n-2]
        return SM2PrivateKey(d, SM2PublicKey(*self.public_point(d)))

    def public_point(self, d: int) -> tuple[int, int]:
        return _mul(d, _G)

    def sign(self, key: SM2PrivateKey, digest: bytes) -> bytes:
        signer = _signer(key)
        while True:  # CryptSM2.sign returns None when r = 0, r + k = n or s = 0
            k = secrets.randbelow(N - 1) + 1
            rs = signer.sign(digest, f"{k:064x}")
            if rs is not None:
                return gmt0009.encode_signature(int(rs[:64], 16), int(rs[64:], 16))

    def verify(self, key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
        try:
            r, s = gmt0009.decode_signature(signature)
        except ValueError:
            return False
        verifier = key._native.get("gmssl")
        if verifier is None:
            verifier = key._native.setdefault("gmssl", _curve("", _hex2(key.x, key.y)))
        try:
            return bool(verifier.verify(_hex2(r, s), digest))
        except (TypeError, ValueError):  # s·G + t·P at infinity: not a valid signature
            return False

    def encrypt(self, key: SM2PublicKey, plaintext: bytes) -> bytes:
        public_hex = _hex2(key.x, key.y)
        while True:  # GB/T 32918.4 §6.1, steps A1–A8
            k = secrets.randbelow(N - 1) + 1
            x1, y1 = _mul(k, _G)
            x2, y2 = _mul(k, public_hex)
            t = kdf(_b(x2) + _b(y2), len(plaintext))
            if any(t):
                break
        c2 = bytes(m ^ b for m, b in zip(plaintext, t, strict=True))
        c3 = sm3(_b(x2) + plaintext + _b(y2))
        return gmt0009.encode_ciphertext(x1, y1, c3, c2)

    def decrypt(self, key: SM2PrivateKey, ciphertext: bytes) -> bytes:
        try:
            x1, y1, c3, c2 = gmt0009.decode_ciphertext(ciphertext)
        except ValueError:
            raise DecryptionError("SM2: decryption failed") from None
        if not is_on_curve(x1, y1):  # invalid-curve points would leak d
            raise DecryptionError("SM2: decryption failed")
        x2, y2 = _mul(key.private_value, _hex2(x1, y1))
        t = kdf(_b(x2) + _b(y2), len(c2))
        message = bytes(c ^ b for c, b in zip(c2, t, strict=True))
        if not any(t) or not hmac.compare_digest(sm3(_b(x2) + message + _b(y2)), c3):
            raise DecryptionError("SM2: decryption failed")
        return message
