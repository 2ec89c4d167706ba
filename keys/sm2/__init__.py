"""SM2 public-key cryptography (GB/T 32918-2016, GM/T 0009-2012).

Signatures are SM3-with-SM2 over ``Z ‖ M`` with the signer ID ``uid``
(default ``1234567812345678``), encoded as DER ``SEQUENCE {r, s}``: the form
``openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678``
produces. :func:`verify` returns ``False`` for any bad, tampered or malformed
signature and never raises for one; :func:`check_signature` raises
:class:`~keys.errors.SignatureError` instead, for callers that prefer that.

Ciphertexts default to the GM/T 0009 DER ``SM2Cipher`` that
``openssl pkeyutl -encrypt`` emits; ``encoding="c1c3c2"`` gives the raw
GB/T 32918.4 ``04 ‖ x1 ‖ y1 ‖ C3 ‖ C2``. :func:`decrypt` accepts either
(DER starts with 0x30, raw with 0x04). The legacy ``C1 ‖ C2 ‖ C3`` order is an
interop trap and is not accepted; convert it with
:func:`keys.sm2.gbt32918.c1c2c3_to_c1c3c2` when a peer is known to send it.

Keys may be given as key objects, PEM (``str`` or ``bytes``) or DER; public
keys also as an encoded point. Load once (``load_pem_*``) on hot paths: the
key object caches the backend's native key.
"""

from __future__ import annotations

from typing import Literal

from keys.errors import DecryptionError, InvalidKeyError, SignatureError
from keys.sm2 import gmt0009
from keys.sm2.backends import ENV_VAR, Sm2Backend, available_backends, backend
from keys.sm2.gbt32918 import (
    DEFAULT_ID,
    c1c2c3_to_c1c3c2,
    c1c3c2_to_c1c2c3,
    check_private_scalar,
    decode_point,
    is_on_curve,
    join_c1c3c2,
    message_digest,
    split_c1c3c2,
)
from keys.sm2.key import SM2PrivateKey, SM2PublicKey
from keys.sm2.pkcs8 import decode_private_key, decode_public_key

__all__ = [
    "DEFAULT_ID",
    "ENV_VAR",
    "SM2PrivateKey",
    "SM2PublicKey",
    "Sm2Backend",
    "available_backends",
    "backend",
    "c1c2c3_to_c1c3c2",
    "c1c3c2_to_c1c2c3",
    "check_signature",
    "decrypt",
    "encrypt",
    "generate_private_key",
    "load_pem_private_key",
    "load_pem_public_key",
    "sign",
    "verify",
]

PrivateKeyLike = SM2PrivateKey | str | bytes
PublicKeyLike = SM2PublicKey | str | bytes
CiphertextEncoding = Literal["der", "c1c3c2"]


def generate_private_key(*, backend: Sm2Backend | None = None) -> SM2PrivateKey:
    """A new random SM2 key pair."""
    return (backend or _default()).generate()


def load_pem_private_key(data: str | bytes, *, backend: Sm2Backend | None = None) -> SM2PrivateKey:
    """Load a PKCS#8 ``PRIVATE KEY`` (or SEC1 ``EC PRIVATE KEY``) PEM, or its DER.

    The public key is derived from d; an embedded public key that disagrees
    is rejected as :class:`~keys.errors.InvalidKeyError`.
    """
    d, embedded = decode_private_key(data)
    check_private_scalar(d)
    public = SM2PublicKey(*(backend or _default()).public_point(d))
    if embedded is not None and decode_point(embedded) != (public.x, public.y):
        raise InvalidKeyError("SM2 private key does not match its embedded public key")
    return SM2PrivateKey(d, public)


def load_pem_public_key(data: str | bytes) -> SM2PublicKey:
    """Load a ``PUBLIC KEY`` (SubjectPublicKeyInfo) PEM or DER, or an encoded point."""
    if isinstance(data, bytes | bytearray) and data[:1] in (b"\x02", b"\x03", b"\x04"):
        return SM2PublicKey.from_bytes(bytes(data))
    return SM2PublicKey(*decode_public_key(data))


def sign(
    private_key: PrivateKeyLike,
    message: bytes,
    *,
    uid: bytes = DEFAULT_ID,
    backend: Sm2Backend | None = None,
) -> bytes:
    """DER signature of ``message`` (SM3 digest with Z for signer ID ``uid``)."""
    be = backend or _default()
    key = _private(private_key, be)
    return be.sign(key, message_digest(key.public_key.x, key.public_key.y, message, uid))


def verify(
    public_key: PublicKeyLike,
    message: bytes,
    signature: bytes,
    *,
    uid: bytes = DEFAULT_ID,
    backend: Sm2Backend | None = None,
) -> bool:
    """True iff ``signature`` is a valid canonical DER signature of ``message``."""
    try:
        gmt0009.decode_signature(signature)  # same strictness whatever the backend
    except ValueError:
        return False
    key = _public(public_key)
    be = backend or _default()
    return be.verify(key, message_digest(key.x, key.y, message, uid), bytes(signature))


def check_signature(
    public_key: PublicKeyLike,
    message: bytes,
    signature: bytes,
    *,
    uid: bytes = DEFAULT_ID,
    backend: Sm2Backend | None = None,
) -> None:
    """Like :func:`verify` but raise :class:`~keys.errors.SignatureError` when invalid."""
    if not verify(public_key, message, signature, uid=uid, backend=backend):
        raise SignatureError("SM2 signature verification failed")


def encrypt(
    public_key: PublicKeyLike,
    plaintext: bytes,
    *,
    encoding: CiphertextEncoding = "der",
    backend: Sm2Backend | None = None,
) -> bytes:
    """Encrypt to ``public_key``; DER ``SM2Cipher`` by default, or raw ``C1 ‖ C3 ‖ C2``.

    SM2 encryption is for short secrets (keys): wrap bulk data with SM4-GCM.
    """
    if not plaintext:
        raise ValueError("SM2 cannot encrypt an empty message")  # KDF(klen=0) is undefined
    if encoding not in ("der", "c1c3c2"):
        raise ValueError("encoding must be 'der' or 'c1c3c2'")
    out = (backend or _default()).encrypt(_public(public_key), bytes(plaintext))
    if encoding == "c1c3c2":
        return join_c1c3c2(*gmt0009.decode_ciphertext(out))
    return out


def decrypt(
    private_key: PrivateKeyLike,
    ciphertext: bytes,
    *,
    backend: Sm2Backend | None = None,
) -> bytes:
    """Decrypt a DER ``SM2Cipher`` or raw ``C1 ‖ C3 ‖ C2`` ciphertext.

    Raises :class:`~keys.errors.DecryptionError` (one error, no detail) for a
    wrong key, tampering or malformed input; never returns unauthenticated bytes.
    """
    be = backend or _default()
    key = _private(private_key, be)
    try:
        is_der = ciphertext[:1] == b"\x30"
        parts = (gmt0009.decode_ciphertext if is_der else split_c1c3c2)(ciphertext)
    except ValueError:
        raise DecryptionError("SM2: decryption failed") from None
    x1, y1, c3, c2 = parts
    if not is_on_curve(x1, y1):  # invalid-curve points would leak d
        raise DecryptionError("SM2: decryption failed")
    return be.decrypt(key, gmt0009.encode_ciphertext(x1, y1, c3, c2))


def _default() -> Sm2Backend:
    return backend()


def _private(key: PrivateKeyLike, be: Sm2Backend) -> SM2PrivateKey:
    return key if isinstance(key, SM2PrivateKey) else load_pem_private_key(key, backend=be)


def _public(key: PublicKeyLike) -> SM2PublicKey:
    return key if isinstance(key, SM2PublicKey) else load_pem_public_key(key)
