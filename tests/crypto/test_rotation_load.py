"""Rotating the gateway signing key while share-tier requests keep coming: every response
received before, during and after the rotation verifies against the keys at /keys/sm2."""

from __future__ import annotations

import threading
import time
from typing import Any

from keys import sm2
from keys.rfc9421 import verify_response
from tests.conftest import gql

Q = "{ population(first: 2) { edges { node { name birthDate } } } }"


def _published(client: Any) -> dict[str, Any]:
    r = client.get("/keys/sm2")
    assert r.status_code == 200
    return {k["kid"]: sm2.load_pem_public_key(k["pem"]) for k in r.json()["keys"]}


def test_rotation_under_load(client: Any, tokens: dict[str, str]) -> None:
    store = client.app.state.gateway.signer.store
    stop = threading.Event()
    lock = threading.Lock()
    received: list[tuple[str, Any]] = []  # (phase, response)
    failures: list[str] = []
    phase = ["before"]

    def fire(check_at_once: bool) -> None:
        while not stop.is_set():
            try:
                label = phase[0]
                r = gql(client, "share", Q, token=tokens["hrss"])
                if check_at_once:  # a client that fetches the published keys right after the response
                    verify_response(r.status_code, dict(r.headers), r.content, _published(client).get)
                with lock:
                    received.append((label, r))
            except Exception as err:  # every failure is reported below
                with lock:
                    failures.append(f"{type(err).__name__}: {err}")

    def wait_for(n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if len(received) + len(failures) >= n:
                    return
            time.sleep(0.01)
        raise AssertionError(f"only {len(received)} responses within {timeout}s")

    workers = [threading.Thread(target=fire, args=(i == 0,), daemon=True) for i in range(3)]
    for w in workers:
        w.start()
    rotated = []
    try:
        wait_for(15)
        for _ in range(3):
            phase[0] = "during"
            rotated.append(store.rotate(overlap_days=1).kid)
            with lock:
                seen = len(received)
            wait_for(seen + 10)
        phase[0] = "after"
        with lock:
            seen = len(received)
        wait_for(seen + 15)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert not failures, failures[:5]

    keys = _published(client)
    assert next(iter(keys)) == rotated[-1] and set(rotated) <= set(keys)
    used: dict[str, set[str]] = {}
    for label, r in received:
        assert r.status_code == 200, r.text
        result = verify_response(r.status_code, dict(r.headers), r.content, keys.get, max_age=300)
        used.setdefault(label, set()).add(result.keyid)
    assert set(used) == {"before", "during", "after"}
    assert rotated[-1] in used["after"]
    assert len(set().union(*used.values())) >= 2  # responses were signed by more than one key
