"""Errors raised by ``keys``.

Messages name the operation and, at most, lengths or algorithm names: never key
material, plaintext, digests or ciphertext bytes, so they are safe to log and to
return in an API error.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for every error raised by ``keys``."""


class DecryptionError(CryptoError):
    """Ciphertext could not be authenticated or decrypted.

    Deliberately one error for a wrong key, a wrong tag, tampered data and a
    malformed envelope: telling them apart would hand an attacker an oracle.
    """


class SignatureError(CryptoError):
    """A signature did not verify (raised by the ``check_*`` helpers only;
    ``verify`` functions return ``False`` instead)."""


class InvalidKeyError(CryptoError, ValueError):
    """Key material is malformed, of the wrong size, or not on the curve."""


class UnknownKeyError(CryptoError, KeyError):
    """No key is known under the requested identifier."""

    def __str__(self) -> str:
        # KeyError.__str__ repr()-quotes its argument; keep the plain message.
        return str(self.args[0]) if self.args else "unknown key"
