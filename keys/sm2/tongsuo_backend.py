"""SM2 on Tongsuo (the OpenSSL fork with native SM2) through ``tongsuopy``.

tongsuopy's public API signs only with its built-in signer ID and has no SM2
encryption, so we drive ``EVP_PKEY_sign/verify/encrypt/decrypt`` on its SM2
``EVP_PKEY`` directly: we pass the digest e = SM3(Z ‖ M) that we computed
(any signer ID, Z cached), and Tongsuo does the curve work in C. That reaches
into tongsuopy's private ``_lib``/``_ffi``/``_evp_pkey``; the dependency is
pinned (tongsuopy 1.0.x) and the tests cross-check against gmssl and OpenSSL.
"""

from __future__ import annotations

from typing import Any

try:
    from tongsuopy.backends.tongsuo import backend as _tongsuo
    from tongsuopy.crypto.asymciphers import ec
except (ImportError, OSError) as exc:  # missing wheel or unloadable shared object
    raise ImportError(f"tongsuopy unavailable: {exc}") from exc

from keys.errors import CryptoError, DecryptionError
from keys.sm2.key import SM2PrivateKey, SM2PublicKey

_lib = _tongsuo._lib
_ffi = _tongsuo._ffi
_CURVE = ec.SM2()
_MAX_SIGNATURE = 80  # DER of two 256-bit INTEGERs is at most 72 bytes


def _private_evp(key: SM2PrivateKey) -> Any:
    native = key._native.get("tongsuo")
    if native is None:
        native = ec.derive_private_key(key.private_value, _CURVE)
        key._native["tongsuo"] = native
    return native._evp_pkey


def _public_evp(key: SM2PublicKey) -> Any:
    native = key._native.get("tongsuo")
    if native is None:
        native = ec.EllipticCurvePublicNumbers(key.x, key.y, _CURVE).public_key()
        key._native["tongsuo"] = native
    return native._evp_pkey


def _ctx(evp_pkey: Any) -> Any:
    ctx = _lib.EVP_PKEY_CTX_new(evp_pkey, _ffi.NULL)
    if ctx == _ffi.NULL:
        raise CryptoError("Tongsuo: cannot create an SM2 context")
    return _ffi.gc(ctx, _lib.EVP_PKEY_CTX_free)


def _crypt(init: Any, op: Any, evp_pkey: Any, data: bytes) -> bytes | None:
    ctx = _ctx(evp_pkey)
    out_len = _ffi.new("size_t *")
    if init(ctx) != 1 or op(ctx, _ffi.NULL, out_len, data, len(data)) != 1:
        _tongsuo._consume_errors()
        return None
    buf = _ffi.new("unsigned char[]", out_len[0])
    if op(ctx, buf, out_len, data, len(data)) != 1:
        _tongsuo._consume_errors()
        return None
    return bytes(_ffi.buffer(buf)[: out_len[0]])


class TongsuoBackend:
    name = "tongsuo"

    def generate(self) -> SM2PrivateKey:
        native = ec.generate_private_key(_CURVE)
        numbers = native.private_numbers()
        pub = numbers.public_numbers
        key = SM2PrivateKey(numbers.private_value, SM2PublicKey(pub.x, pub.y))
        key._native["tongsuo"] = native
        return key

    def public_point(self, d: int) -> tuple[int, int]:
        pub = ec.derive_private_key(d, _CURVE).public_key().public_numbers()
        return pub.x, pub.y

    def sign(self, key: SM2PrivateKey, digest: bytes) -> bytes:
        ctx = _ctx(_private_evp(key))
        sig_len = _ffi.new("size_t *", _MAX_SIGNATURE)
        buf = _ffi.new("unsigned char[]", _MAX_SIGNATURE)
        if _lib.EVP_PKEY_sign_init(ctx) != 1 or (
            _lib.EVP_PKEY_sign(ctx, buf, sig_len, digest, len(digest)) != 1
        ):
            _tongsuo._consume_errors()
            raise CryptoError("Tongsuo: SM2 signing failed")
        return bytes(_ffi.buffer(buf)[: sig_len[0]])

    def verify(self, key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
        ctx = _ctx(_public_evp(key))
        ok = bool(
            _lib.EVP_PKEY_verify_init(ctx) == 1
            and _lib.EVP_PKEY_verify(ctx, signature, len(signature), digest, len(digest)) == 1
        )
        if not ok:
            _tongsuo._consume_errors()  # a failed verify leaves errors on the queue
        return ok

    def encrypt(self, key: SM2PublicKey, plaintext: bytes) -> bytes:
        out = _crypt(_lib.EVP_PKEY_encrypt_init, _lib.EVP_PKEY_encrypt, _public_evp(key), plaintext)
        if out is None:
            raise CryptoError("Tongsuo: SM2 encryption failed")
        return out

    def decrypt(self, key: SM2PrivateKey, ciphertext: bytes) -> bytes:
        out = _crypt(_lib.EVP_PKEY_decrypt_init, _lib.EVP_PKEY_decrypt, _private_evp(key), ciphertext)
        if out is None:
            raise DecryptionError("SM2: decryption failed")
        return out
