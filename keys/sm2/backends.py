"""The SM2 backend interface and its selection.

A backend does only the elliptic-curve work. Everything it shares with the
other backend (Z value and digest, DER parsing and canonical checks, point
validation, ciphertext layout) lives in ``gbt32918`` / ``gmt0009`` so both
give byte-compatible results and reject the same malformed input.

Selection: ``SHUQIAO_SM2_BACKEND=tongsuo|gmssl`` forces one; otherwise
``tongsuo`` (native Tongsuo via tongsuopy, ~0.5 ms per signature) when it
imports, else ``gmssl`` (pure Python, ~15 ms per signature).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from keys.errors import CryptoError

if TYPE_CHECKING:
    from keys.sm2.key import SM2PrivateKey, SM2PublicKey

ENV_VAR = "SHUQIAO_SM2_BACKEND"
NAMES = ("tongsuo", "gmssl")


@runtime_checkable
class Sm2Backend(Protocol):
    name: str

    def generate(self) -> SM2PrivateKey:
        """A fresh key pair from a CSPRNG."""
        ...

    def public_point(self, d: int) -> tuple[int, int]:
        """d·G as affine (x, y)."""
        ...

    def sign(self, key: SM2PrivateKey, digest: bytes) -> bytes:
        """DER SM2Signature over ``digest`` = e = SM3(Z ‖ M) (GB/T 32918.2 §6.1)."""
        ...

    def verify(self, key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
        """True iff the canonical DER ``signature`` is valid for ``digest``."""
        ...

    def encrypt(self, key: SM2PublicKey, plaintext: bytes) -> bytes:
        """GM/T 0009 DER SM2Cipher of non-empty ``plaintext``."""
        ...

    def decrypt(self, key: SM2PrivateKey, ciphertext: bytes) -> bytes:
        """Plaintext of a canonical DER SM2Cipher whose C1 is on the curve;
        raises DecryptionError when C3 does not match."""
        ...


_instances: dict[str, Sm2Backend] = {}


def _load(name: str) -> Sm2Backend:
    if name not in _instances:
        if name == "tongsuo":
            from keys.sm2.tongsuo_backend import TongsuoBackend

            _instances[name] = TongsuoBackend()
        elif name == "gmssl":
            from keys.sm2.gmssl_backend import GmsslBackend

            _instances[name] = GmsslBackend()
        else:
            raise CryptoError(f"unknown SM2 backend {name!r}; choose one of {', '.join(NAMES)}")
    return _instances[name]


def available_backends() -> tuple[str, ...]:
    """Names of the backends that import on this machine, fastest first."""
    found = []
    for name in NAMES:
        try:
            _load(name)
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def backend(name: str | None = None) -> Sm2Backend:
    """The backend called ``name``, else the one ``SHUQIAO_SM2_BACKEND`` forces,
    else the fastest available. A forced backend that cannot load is an error,
    never a silent fallback."""
    forced = name or os.environ.get(ENV_VAR, "").strip().lower()
    if forced and forced != "auto":
        try:
            return _load(forced)
        except ImportError as exc:
            raise CryptoError(f"SM2 backend {forced!r} is not installed: {exc}") from None
    try:
        return _load("tongsuo")
    except ImportError:
        return _load("gmssl")
