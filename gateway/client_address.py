"""The caller's address as the audit log and the rate limits see it.

X-Forwarded-For is believed only when the peer is a configured proxy (SHUQIAO_TRUSTED_PROXIES,
IPs or CIDRs; none by default): then the caller is the right-most hop that is not itself a
trusted proxy, since every hop left of that one is whatever the caller chose to write.
Otherwise the caller is the peer. `ClientAddressMiddleware` decides this once per request;
`client_address()` is what every rate limit and audit event reads. (`shuqiao serve` turns
uvicorn's own proxy-header rewriting off so the peer reaches us unaltered; run uvicorn
directly with `--no-proxy-headers`.)

An address is only ever recorded as a normalised IP; anything else becomes `invalid:` and a
short SM3 digest of it, so a forged header can neither write its own text into the audit chain
(and from there into alert summaries, the officer page or an exported spreadsheet) nor pose as
another client, while repeated values can still be told apart."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from keys.sm3 import sm3

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
STATE_KEY = "client_address"


@lru_cache(maxsize=4096)  # the same few peers and proxies ask again and again (ipaddress parses slowly)
def normalise_address(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return "invalid:" + sm3(raw.encode("utf-8", "surrogatepass")).hex()[:16]


def parse_proxies(spec: str | Iterable[str]) -> tuple[Network, ...]:
    """`10.0.0.1, 10.1.0.0/16` → networks. A malformed entry is a configuration error, not a
    silently ignored proxy."""
    items = spec.split(",") if isinstance(spec, str) else spec
    out = []
    for item in items:
        if item.strip():
            try:
                out.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"SHUQIAO_TRUSTED_PROXIES: {item.strip()!r} is not an IP or CIDR") from None
    return tuple(out)


def _trusted(raw: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def forwarded_address(peer: str | None, forwarded: Sequence[str], proxies: Sequence[Network]) -> str | None:
    """The caller's address from the peer and the X-Forwarded-For header values (in order)."""
    if peer is None or not proxies or not _trusted(peer, proxies):
        return normalise_address(peer)
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    if not hops:
        return normalise_address(peer)
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return normalise_address(hop)
    return normalise_address(hops[0])  # every hop a proxy of ours: the first one saw the caller


class ClientAddressMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            address = forwarded_address(client[0] if client else None, forwarded, self.proxies)
            scope.setdefault("state", {})[STATE_KEY] = address
        await self.app(scope, receive, send)


def client_address(request: HTTPConnection | None) -> str | None:
    if request is None:
        return None
    state = request.scope.get("state") or {}
    if STATE_KEY in state:
        return state[STATE_KEY]
    # Outside the middleware (a bare route in a test): the peer, never a forwarded header.
    return normalise_address(request.client.host) if request.client is not None else None
