"""Shuqiao crypto benchmark: keys.sm2 / keys.sm4 next to `openssl speed`, same run.

    .venv/bin/python bench/crypto_bench.py [--seconds 2] [--json]

Baselines come from the system `openssl speed` (wall clock, `-elapsed`):
`sm2` for sign/verify, and `-evp sm4-ctr` for SM4 because OpenSSL 3.0 has no
SM4-GCM (3.2+ does); GCM is CTR plus GHASH, so that ratio slightly flatters
OpenSSL. Ours are wall-clock loops through the public API (`keys.sm2.sign`
on a loaded key, digest + Z included; `keys.sm4.encrypt`). Target: SM2 sign
>= 0.7x OpenSSL on the tongsuo backend.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a bare checkout too

from keys import sm2, sm4

SM4_CHUNK = 16384  # bytes per call, the same block size given to openssl speed
MESSAGE = b'{"data":{"enterpriseRegistration":{"totalCount":1}}}' * 8  # ~400 B response


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, timed in growing batches for ``seconds``."""
    fn()  # warm caches (native key handle, Z value)
    calls, batch, start = 0, 1, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
        batch = min(batch * 2, 256)
    return calls / elapsed


def openssl_speed(seconds: int) -> dict[str, float] | None:
    exe = shutil.which("openssl")
    if exe is None:
        return None
    out: dict[str, float] = {}
    base = [exe, "speed", "-mr", "-elapsed", "-seconds", str(seconds)]
    runs = ([*base, "sm2"], [*base, "-bytes", str(SM4_CHUNK), "-evp", "sm4-ctr"])
    for cmd in runs:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            fields = line.split(":")
            if line.startswith("+F7:") and fields[3] == "CurveSM2":  # +F7:n:bits:name:sign/s:verify/s
                out["sm2_sign"], out["sm2_verify"] = float(fields[4]), float(fields[5])
            elif line.startswith("+F:") and fields[2].upper() == "SM4-CTR":  # +F:n:name:bytes/s
                out["sm4_mbps"] = float(fields[3]) / 1e6
    out["version"] = subprocess.run(
        [exe, "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out


def ours(seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name in sm2.available_backends():
        be = sm2.backend(name)
        key = sm2.generate_private_key(backend=be)
        sig = sm2.sign(key, MESSAGE, backend=be)
        budget = seconds if name == "tongsuo" else seconds / 2  # gmssl is ~50x slower
        results[name] = {
            "sign": rate(lambda k=key, b=be: sm2.sign(k, MESSAGE, backend=b), budget),
            "verify": rate(
                lambda p=key.public_key, s=sig, b=be: sm2.verify(p, MESSAGE, s, backend=b), budget
            ),
        }
    sm4_key, chunk = sm4.generate_key(), os.urandom(SM4_CHUNK)
    results["sm4_gcm"] = {"mbps": rate(lambda: sm4.encrypt(sm4_key, chunk), seconds) * SM4_CHUNK / 1e6}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="per measurement (default 2)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    started = time.perf_counter()
    baseline = openssl_speed(args.seconds)
    mine = ours(args.seconds)
    report = {"openssl": baseline, "shuqiao": mine, "wall_seconds": time.perf_counter() - started}
    if args.json:
        print(json.dumps(report, indent=2))
        return

    def ratio(value: float, key: str) -> str:
        return f"{value / baseline[key]:5.2f}x" if baseline and key in baseline else "    -"

    print(f"baseline: {baseline['version'] if baseline else 'openssl not found'} (openssl speed -elapsed)")
    print(f"{'operation':<34}{'shuqiao':>12}{'openssl':>12}{'ratio':>8}")
    rows = []
    for name in sm2.available_backends():
        for op in ("sign", "verify"):
            rows.append((f"SM2 {op}/s  [{name}]", mine[name][op], f"sm2_{op}"))
    rows.append(("SM4-GCM MB/s (openssl: SM4-CTR)", mine["sm4_gcm"]["mbps"], "sm4_mbps"))
    for label, value, key in rows:
        theirs = f"{baseline[key]:12.1f}" if baseline and key in baseline else f"{'-':>12}"
        print(f"{label:<34}{value:12.1f}{theirs}{ratio(value, key):>8}")
    if baseline and "tongsuo" in mine:
        verdict = mine["tongsuo"]["sign"] / baseline["sm2_sign"]
        status = "met" if verdict >= 0.7 else "NOT met"
        print(f"target SM2 sign >= 0.70x OpenSSL: {verdict:.2f}x ({status})")
    print(f"active backend: {sm2.backend().name}; run took {report['wall_seconds']:.1f} s")


if __name__ == "__main__":
    main()
