"""SM4 block cipher (GB/T 32907-2016) in GCM mode (NIST SP 800-38D; RFC 8998).

Two shapes of the same AEAD:

* :func:`seal` / :func:`unseal` keep nonce, ciphertext and tag apart, for
  envelopes that store them in separate fields;
* :func:`encrypt` / :func:`decrypt` pack them as ``nonce(12) ‖ ciphertext ‖ tag(16)``
  in one ``bytes`` value, for data at rest.

Nonces are 12 random bytes. With random nonces a key must not seal more than
2**32 messages (SP 800-38D §8.3); rotate keys well before that.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keys.errors import DecryptionError, InvalidKeyError

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


def generate_key() -> bytes:
    """Return a fresh random 128-bit SM4 key."""
    return os.urandom(KEY_SIZE)


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) != KEY_SIZE:
        raise InvalidKeyError(f"SM4 key must be {KEY_SIZE} bytes")


def seal(key: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """Encrypt and authenticate; return ``(nonce, ciphertext, tag)``.

    ``aad`` is authenticated but not encrypted: bind the context (record id,
    field name, key id) here so a ciphertext cannot be moved elsewhere.
    """
    _check_key(key)
    nonce = os.urandom(NONCE_SIZE)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    ciphertext = enc.update(plaintext) + enc.finalize()
    return nonce, ciphertext, enc.tag


def unseal(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`seal`; raise :class:`DecryptionError` unless authentic.

    No plaintext is released before the tag checks out (``finalize`` verifies
    the tag and the buffered output is discarded on failure).
    """
    _check_key(key)
    # Exact sizes: GCM would accept shorter tags, and truncated tags are forgeable.
    if len(nonce) != NONCE_SIZE or len(tag) != TAG_SIZE:
        raise DecryptionError("SM4-GCM: malformed nonce or tag")
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    plaintext = dec.update(ciphertext)
    try:
        dec.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM: authentication failed") from None
    return plaintext


def encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Return ``nonce ‖ ciphertext ‖ tag`` (``len(plaintext) + 28`` bytes)."""
    nonce, ciphertext, tag = seal(key, plaintext, aad)
    return nonce + ciphertext + tag


def decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`encrypt`; raise :class:`DecryptionError` unless authentic."""
    _check_key(key)
    if len(blob) < OVERHEAD:
        raise DecryptionError("SM4-GCM: ciphertext too short")
    blob = bytes(blob)
    return unseal(key, blob[:NONCE_SIZE], blob[NONCE_SIZE:-TAG_SIZE], blob[-TAG_SIZE:], aad)
