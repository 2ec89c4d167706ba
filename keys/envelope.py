"""Digital envelope (GM/T 0009-style) for the policy engine's "encrypt" action.

A field value is encrypted under a fresh SM4 key, and that key is encrypted
to the recipient's SM2 public key, so only the holder of the private key can
read the field while the bulk data uses fast symmetric crypto. The envelope
is a JSON object with all binary members standard base64 (with padding)::

    {
      "alg": "SM2-SM4-GCM",          # fixed; anything else is refused
      "kid": "3f2a9c…",              # recipient key id, [A-Za-z0-9._:-]{1,64}
      "wrappedKey": "MHw…",          # SM2 encryption of the 16-byte SM4 key, DER SM2Cipher (C1C3C2)
      "nonce": "…",                  # 12 bytes
      "ciphertext": "…",             # SM4-GCM ciphertext, same length as the plaintext
      "tag": "…"                     # 16-byte GCM tag
    }

The GCM additional data is ``"SM2-SM4-GCM" 0x00 kid 0x00 aad``: the alg and
kid cannot be swapped without the tag failing, and the caller's ``aad``
(e.g. record id and field name) pins the envelope to where it was stored.
Every failure to open raises one :class:`~keys.errors.DecryptionError`
whose message says which check failed, never any key or plaintext byte.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from keys import sm2, sm4
from keys.errors import CryptoError, DecryptionError
from keys.sm2 import SM2PrivateKey, SM2PublicKey

ALG = "SM2-SM4-GCM"
MEMBERS = ("alg", "kid", "wrappedKey", "nonce", "ciphertext", "tag")
_KID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


def _gcm_aad(kid: str, aad: bytes) -> bytes:
    return ALG.encode() + b"\x00" + kid.encode("ascii") + b"\x00" + bytes(aad)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seal_for(public_key: SM2PublicKey, key_id: str, plaintext: bytes, aad: bytes = b"") -> dict[str, str]:
    """Encrypt ``plaintext`` to ``public_key``; return the JSON-ready envelope."""
    if not isinstance(key_id, str) or not _KID_RE.match(key_id):
        raise ValueError("envelope: key id must match [A-Za-z0-9._:-]{1,64}")
    cek = sm4.generate_key()
    nonce, ciphertext, tag = sm4.seal(cek, plaintext, _gcm_aad(key_id, aad))
    return {
        "alg": ALG,
        "kid": key_id,
        "wrappedKey": _b64(sm2.encrypt(public_key, cek)),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
        "tag": _b64(tag),
    }


def _member(envelope: Mapping[str, Any], name: str) -> bytes:
    value = envelope[name]
    if not isinstance(value, str):
        raise DecryptionError(f"envelope: {name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"envelope: {name} is not valid base64") from None


def open_envelope(
    private_key: SM2PrivateKey,
    envelope: Mapping[str, Any],
    aad: bytes = b"",
    *,
    expected_kid: str | None = None,
) -> bytes:
    """Inverse of :func:`seal_for`; raise :class:`DecryptionError` unless authentic.

    ``expected_kid``, when given, must equal the envelope's ``kid`` (catches an
    envelope routed to the wrong key before any SM2 work).
    """
    if not isinstance(envelope, Mapping):
        raise DecryptionError("envelope: not an object")
    missing = [m for m in MEMBERS if m not in envelope]
    if missing:
        raise DecryptionError(f"envelope: missing member(s) {', '.join(missing)}")
    extra = sorted(set(envelope) - set(MEMBERS))
    if extra:
        raise DecryptionError(f"envelope: unexpected member(s) {', '.join(map(str, extra))}")
    if envelope["alg"] != ALG:
        raise DecryptionError(f"envelope: alg must be {ALG}")
    kid = envelope["kid"]
    if not isinstance(kid, str) or not _KID_RE.match(kid):
        raise DecryptionError("envelope: kid must match [A-Za-z0-9._:-]{1,64}")
    if expected_kid is not None and kid != expected_kid:
        raise DecryptionError("envelope: kid is not the expected key id")
    wrapped, nonce, ciphertext, tag = (_member(envelope, m) for m in MEMBERS[2:])
    try:
        cek = sm2.decrypt(private_key, wrapped)
    except (CryptoError, ValueError):
        raise DecryptionError(
            "envelope: wrapped key does not decrypt (wrong private key or tampered)"
        ) from None
    if len(cek) != sm4.KEY_SIZE:
        raise DecryptionError("envelope: wrapped key has the wrong length")
    try:
        return sm4.unseal(cek, nonce, ciphertext, tag, _gcm_aad(kid, aad))
    except DecryptionError:
        raise DecryptionError(
            "envelope: authentication failed (tampered nonce, ciphertext, tag, kid or aad)"
        ) from None
