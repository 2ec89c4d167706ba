"""The policy engine's encrypt action: a sensitive field value, sealed to the consuming
department's registered SM2 key, as one compact string that fits the schema's `String`.

Compact form (five dots, like JWE compact serialisation; every binary part base64url
without padding)::

    SM2-SM4-GCM.<kid>.<wrappedKey>.<nonce>.<ciphertext>.<tag>

- `kid`        the department key id (16 hex) the value is sealed to
- `wrappedKey` DER SM2Cipher (GM/T 0009, C1C3C2) of the 16-byte SM4 content key
- `nonce`      12 bytes; `ciphertext` SM4-GCM of the UTF-8 value; `tag` 16 bytes

It is exactly the `keys.envelope` JSON envelope re-encoded, so `open_envelope` opens it.
GCM additional data is `"SM2-SM4-GCM" 0x00 kid 0x00 aad` (as `keys.envelope`), with

    aad = "shuqiao-field/1" 0x00 <dataset code> 0x00 <field name>

(catalogue names: `population`, `id_number`), so a value cannot be moved to another field
or dataset, or re-labelled with another kid, without authentication failing.

One content key per response and recipient: the first encrypted value of a request wraps
a fresh SM4 key to the department (one SM2 encryption, ~1–2 ms); every further value is
SM4-GCM under that key with its own random nonce (microseconds). Each value still carries
the wrapped key, so each decrypts on its own.
"""

from __future__ import annotations

import base64
import binascii
import re
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any

from catalogue.spec import DatasetSpec, FieldSpec
from gateway.crypto.service import DepartmentKeyDirectory, RecipientKey
from keys import sm2, sm4
from keys.envelope import ALG, open_envelope
from keys.errors import DecryptionError
from keys.sm2 import SM2PrivateKey

AAD_LABEL = b"shuqiao-field/1"
_KID = re.compile(r"[0-9a-f]{16}\Z")
_B64URL = re.compile(r"[A-Za-z0-9_-]+\Z")


def field_aad(dataset: str, field: str) -> bytes:
    """The caller context bound into every encrypted value: dataset code and field name."""
    return AAD_LABEL + b"\x00" + dataset.encode() + b"\x00" + _snake(field).encode()


def _snake(name: str) -> str:
    """Accept the GraphQL spelling too (`idNumber` → `id_number`)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower() if any(c.isupper() for c in name) else name


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(part: str, name: str) -> bytes:
    if not _B64URL.match(part):
        raise DecryptionError(f"encrypted value: {name} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionError(f"encrypted value: {name} is not base64url") from None


def _plaintext(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat().encode()
    return str(value).encode()


def _gcm_aad(kid: str, aad: bytes) -> bytes:
    # Must equal keys.envelope's additional data, so open_envelope opens our values.
    return ALG.encode() + b"\x00" + kid.encode("ascii") + b"\x00" + aad


class EncryptionUnavailable(RuntimeError):
    """The department's key went away between planning and encrypting: fail closed."""


# Content keys of the current response, by recipient kid: (SM4 key, base64url wrapped key).
# `begin_response()` gives each request a fresh scope (ASGI runs each request in its own
# task, so the variable never leaks between requests).
_RESPONSE_KEYS: ContextVar[dict[str, tuple[bytes, str]] | None] = ContextVar("shuqiao_cek", default=None)


def begin_response() -> None:
    """Start a content-key scope: encrypted values from here on in this task share one
    content key per recipient key."""
    _RESPONSE_KEYS.set({})


def seal_value(recipient: RecipientKey, dataset: str, field: str, value: Any) -> str:
    """One value in compact form, sealed to `recipient` and bound to dataset + field."""
    scope = _RESPONSE_KEYS.get()
    entry = scope.get(recipient.kid) if scope is not None else None
    if entry is None:
        cek = sm4.generate_key()
        entry = (cek, _b64u(sm2.encrypt(recipient.public_key, cek)))
        if scope is not None:
            scope[recipient.kid] = entry
    cek, wrapped = entry
    kid = recipient.kid
    nonce, ciphertext, tag = sm4.seal(cek, _plaintext(value), _gcm_aad(kid, field_aad(dataset, field)))
    return ".".join((ALG, kid, wrapped, _b64u(nonce), _b64u(ciphertext), _b64u(tag)))


class DepartmentEncryptor:
    """The `Encryptor` (resolvers.context) for one consuming department.

    It holds no key: each call seals to the department's key that is active *now* in the
    directory. Executors cache operation plans (with their transforms) across requests, so
    an encryptor captured by a cached plan must not pin a key or a content key; this one
    follows key registration and rotation, and the content key comes from the response scope.
    """

    __slots__ = ("department", "directory")

    def __init__(self, directory: DepartmentKeyDirectory, department: str) -> None:
        self.directory = directory
        self.department = department

    def __call__(self, dataset: DatasetSpec, field: FieldSpec, value: Any) -> str:
        key = self.directory.active(self.department)
        if key is None:
            raise EncryptionUnavailable(f"{self.department} has no active SM2 key any more")
        return seal_value(key, dataset.code, field.name, value)


def encryptor_for_department(
    directory: DepartmentKeyDirectory, department: str
) -> DepartmentEncryptor | None:
    """The encryptor for one request of `department`, or None when it has no active key
    (the policy then denies, saying so). Opens a fresh content-key scope for the response."""
    if directory.active(department) is None:
        return None
    begin_response()
    return DepartmentEncryptor(directory, department)


def parse_compact(value: str) -> dict[str, str]:
    """The compact form as a `keys.envelope` JSON envelope (standard base64 members)."""
    if not isinstance(value, str):
        raise DecryptionError("encrypted value: not a string")
    parts = value.strip().split(".")
    if len(parts) != 6:
        raise DecryptionError("encrypted value: expected 6 dot-separated parts")
    alg, kid, *binary = parts
    if alg != ALG:
        raise DecryptionError(f"encrypted value: alg must be {ALG}")
    if not _KID.match(kid):
        raise DecryptionError("encrypted value: kid must be 16 lower-case hex characters")
    names = ("wrappedKey", "nonce", "ciphertext", "tag")
    envelope = {"alg": alg, "kid": kid}
    for name, part in zip(names, binary, strict=True):
        if name != "ciphertext" and not part:
            raise DecryptionError(f"encrypted value: {name} is empty")
        envelope[name] = base64.b64encode(_unb64u(part, name) if part else b"").decode("ascii")
    return envelope


def decrypt_field(private_key: SM2PrivateKey | str | bytes, value: str, dataset: str, field: str) -> str:
    """Open a value the gateway encrypted to the caller's department.

    `private_key` is the department's SM2 private key (object or PEM); `dataset` and
    `field` are where the value was read (`"population"`, `"id_number"` or `"idNumber"`).
    Raises `keys.errors.DecryptionError` saying which check failed.
    """
    key = private_key if isinstance(private_key, SM2PrivateKey) else sm2.load_pem_private_key(private_key)
    envelope = parse_compact(value)
    plaintext = open_envelope(key, envelope, field_aad(dataset, field))
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("encrypted value: plaintext is not UTF-8") from None


def value_kid(value: str) -> str:
    """The key id an encrypted value is sealed to (no decryption)."""
    return parse_compact(value)["kid"]
