"""The caller's address as the audit log and the rate limits see it.

uvicorn rewrites `request.client` from X-Forwarded-For when the peer is a trusted proxy
(`--forwarded-allow-ips`, 127.0.0.1 by default) and takes the header's text as it comes. An
address is only ever recorded as a normalised IP; anything else becomes `invalid:` and a short
SM3 digest of it, so a forged header can neither write its own text into the audit chain (and
from there into alert summaries, the officer page or an exported spreadsheet) nor pose as
another client, while repeated values can still be told apart."""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from keys.sm3 import sm3


def normalise_address(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return "invalid:" + sm3(raw.encode("utf-8", "surrogatepass")).hex()[:16]


def client_address(request: HTTPConnection | None) -> str | None:
    if request is None or request.client is None:
        return None
    return normalise_address(request.client.host)
