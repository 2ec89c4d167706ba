"""File-based store for the gateway's SM2 response-signing keys.

Layout of the directory (created 0700)::

    index.json           {"version": 1, "keys": [{"kid", "not_before", "not_after", "status"}, …]}
    <kid>.pem            PKCS#8 private key, mode 0600
    <kid>.pub.pem        SubjectPublicKeyInfo, so verifying never reads a private key

``kid`` is the first 16 hex characters of the public key's SM3 fingerprint
(:meth:`SM2PublicKey.fingerprint`), so anyone holding the public key can
recompute it. Times are UTC ISO 8601. Every file is written to a temporary
name in the same directory, fsync'd and renamed, so a crash leaves the old
or the new file, never half of one; mutations hold an ``flock`` on
``.lock`` so two processes do not interleave index updates.

Why rotation keeps the old key: responses signed just before a rotation are
still in flight or cached. :meth:`KeyStore.rotate` retires the old key and
cuts its ``not_after`` to ``now + overlap``; :meth:`KeyStore.public` keeps
returning it until then, while :meth:`KeyStore.current` signs with the new one.
Only key ids are ever logged.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from keys import sm2
from keys.errors import InvalidKeyError, UnknownKeyError
from keys.sm2 import SM2PrivateKey, SM2PublicKey

log = logging.getLogger(__name__)

KID_LENGTH = 16
INDEX = "index.json"
Status = Literal["active", "retired"]


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    not_before: datetime
    not_after: datetime
    status: Status

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when < self.not_after

    def to_json(self) -> dict[str, str]:
        return {
            "kid": self.kid,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> KeyInfo:
        if data["status"] not in ("active", "retired"):
            raise ValueError(f"key {data['kid']}: bad status")
        return cls(data["kid"], _parse(data["not_before"]), _parse(data["not_after"]), data["status"])  # type: ignore[arg-type]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def key_id(public_key: SM2PublicKey) -> str:
    """The store's key id for ``public_key``: 16 hex chars of its SM3 fingerprint."""
    return public_key.fingerprint()[:KID_LENGTH]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class KeyStore:
    """SM2 signing keys in ``directory``; see the module docstring for layout."""

    def __init__(self, directory: str | os.PathLike[str], *, clock: Callable[[], datetime] = _now) -> None:
        self.directory = Path(directory)
        self._clock = clock
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    # -- reading ---------------------------------------------------------------
    def list(self) -> list[KeyInfo]:
        """Every key in the index, oldest first."""
        path = self.directory / INDEX
        if not path.exists():
            return []
        data = json.loads(path.read_text("utf-8"))
        if data.get("version") != 1:
            raise ValueError(f"{path}: unsupported index version")
        return sorted((KeyInfo.from_json(k) for k in data["keys"]), key=lambda k: k.not_before)

    def current(self) -> tuple[KeyInfo, SM2PrivateKey]:
        """The newest active key valid now, with its private key, for signing."""
        now = self._clock()
        usable = [k for k in self.list() if k.status == "active" and k.valid_at(now)]
        if not usable:
            raise UnknownKeyError("no active signing key is valid now; generate or rotate")
        info = usable[-1]
        private = sm2.load_pem_private_key((self.directory / f"{info.kid}.pem").read_bytes())
        self._check_kid(info.kid, private.public_key)
        return info, private

    def public(self, kid: str) -> SM2PublicKey | None:
        """The public key for ``kid`` if it is known and within its validity now
        (active or retired); ``None`` otherwise. Usable as a verifier's lookup."""
        now = self._clock()
        info = next((k for k in self.list() if k.kid == kid), None)
        if info is None or not info.valid_at(now):
            return None
        public = sm2.load_pem_public_key((self.directory / f"{kid}.pub.pem").read_bytes())
        self._check_kid(kid, public)
        return public

    # -- writing ---------------------------------------------------------------
    def generate(self, validity_days: int) -> KeyInfo:
        """Create a new active key valid from now for ``validity_days``."""
        with self._locked():
            return self._generate(validity_days)

    def rotate(self, overlap_days: float, validity_days: int = 90) -> KeyInfo:
        """Make a new key current; retire the active ones, keeping them verifiable
        for ``overlap_days`` more (never beyond their own ``not_after``)."""
        with self._locked():
            new = self._generate(validity_days)
            cutoff = self._clock() + timedelta(days=overlap_days)
            keys = [
                replace(k, status="retired", not_after=min(k.not_after, cutoff))
                if k.status == "active" and k.kid != new.kid
                else k
                for k in self.list()
            ]
            self._write_index(keys)
            log.info(
                "rotated signing key: new kid=%s, %d retired", new.kid, sum(k.kid != new.kid for k in keys)
            )
            return new

    def _generate(self, validity_days: int) -> KeyInfo:
        if validity_days <= 0:
            raise ValueError("validity_days must be positive")
        private = sm2.generate_private_key()
        kid = key_id(private.public_key)
        now = self._clock()
        info = KeyInfo(kid, now, now + timedelta(days=validity_days), "active")
        self._write(f"{kid}.pem", private.to_pem().encode("ascii"), 0o600)
        self._write(f"{kid}.pub.pem", private.public_key.to_pem().encode("ascii"), 0o644)
        self._write_index([*self.list(), info])
        log.info("generated signing key kid=%s valid until %s", kid, _iso(info.not_after))
        return info

    def _write_index(self, keys: Sequence[KeyInfo]) -> None:
        body = json.dumps({"version": 1, "keys": [k.to_json() for k in keys]}, indent=2) + "\n"
        self._write(INDEX, body.encode("utf-8"), 0o644)

    def _write(self, name: str, data: bytes, mode: int) -> None:
        # mkstemp creates the file 0600 before any byte is written; chmod only widens public files.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _check_kid(kid: str, public: SM2PublicKey) -> None:
        if key_id(public) != kid:
            raise InvalidKeyError(f"key file for {kid} holds a different key")
