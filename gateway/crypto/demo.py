"""The demo's department key: `hrss` holds an SM2 key pair, so the population grant's
`idNumber` (L4 sensitive) is delivered to it encrypted. The private key is written to
`<var_dir>/demo-keys/hrss.pem` (0600) — in real life it never leaves the department."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.crypto.service import register_department_key
from keys import sm2

DEMO_KEY_DEPARTMENTS = ("hrss",)


def demo_key_path(var_dir: Path, department: str) -> Path:
    return var_dir / "demo-keys" / f"{department}.pem"


def _ensure_private_key(path: Path) -> sm2.SM2PrivateKey:
    if path.exists():
        return sm2.load_pem_private_key(path.read_bytes())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = sm2.generate_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.to_pem())
    path.with_suffix(".pub.pem").write_text(key.public_key.to_pem())
    return key


async def setup_demo_keys(engine: AsyncEngine, var_dir: Path) -> dict[str, dict[str, str]]:
    """Idempotent: generate each demo department's key pair if missing and register its
    public key. Returns {department: {"kid", "private_key_file"}}."""
    out = {}
    for dept in DEMO_KEY_DEPARTMENTS:
        path = demo_key_path(var_dir, dept)
        key = _ensure_private_key(path)
        info = await register_department_key(engine, dept, key.public_key.to_pem())
        out[dept] = {"kid": info.kid, "private_key_file": str(path)}
    return out
