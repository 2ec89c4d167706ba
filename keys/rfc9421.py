"""HTTP Message Signatures (RFC 9421) on gateway responses, signed with SM2.

What is signed is the *signature base* of RFC 9421 section 2.5: one line
``"<component>": <value>`` per covered component, then
``"@signature-params": <inner list>`` (section 2.3), joined by ``\\n`` with no
trailing newline. The signature value is the GM/T 0009 DER SM2 signature
(SM3, signer ID ``1234567812345678``) of those bytes, sent base64 as an
RFC 8941 byte sequence::

    Content-Digest: sm3=:…:
    Signature-Input: sig1=("@status" "content-digest" "x-request-id");created=1700000000;keyid="3f2a…"
    Signature: sig1=:MEUCIQ…:

No ``alg`` parameter: RFC 9421's algorithm registry has no SM2 entry, so we
send none and the verifier derives the algorithm from ``keyid`` (every key
the gateway publishes is SM2). A received ``alg`` is rejected rather than
guessed at.

Scope: responses — the derived ``@status`` and header fields (lower-cased,
values trimmed, repeated lines joined by ``", "`` by the caller); requests
(:func:`sign_request`, :func:`verify_request`) — the derived ``@method``,
``@target-uri``, ``@authority``, ``@scheme``, ``@request-target``, ``@path``
and ``@query`` of RFC 9421 section 2.2, and header fields. Component
parameters (``;sf``, ``;key``, ``;req``, ``;bs``, ``@query-param;name``…) are
rejected.

A request signature::

    Content-Digest: sm3=:…:
    Signature-Input: sig1=("@method" "@target-uri" "content-digest");created=1700000000;keyid="…";nonce="…"
    Signature: sig1=:MEUCIQ…:

Because the base is plain bytes, any SM2 implementation can check a response;
:func:`signed_response` returns the base and DER signature for that, e.g. to
verify with ``openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt
distid:1234567812345678 -pubin -inkey pub.pem -in base.txt -sigfile sig.der``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from keys import rfc8941, sm2
from keys.errors import SignatureError
from keys.rfc9530 import content_digest, verify_content_digest
from keys.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "DEFAULT_COMPONENTS",
    "DEFAULT_REQUEST_COMPONENTS",
    "SignedResponse",
    "VerifiedSignature",
    "derived_request_components",
    "request_signature_base",
    "sign_request",
    "sign_response",
    "signature_base",
    "signed_request",
    "signed_response",
    "verify_request",
    "verify_response",
]

DEFAULT_COMPONENTS: tuple[str, ...] = ("@status", "content-digest")
REQUIRED_COMPONENTS: tuple[str, ...] = ("@status", "content-digest")
DEFAULT_LABEL = "sig1"
DEFAULT_REQUEST_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri", "content-digest")
REQUIRED_REQUEST_COMPONENTS: tuple[str, ...] = ("@method", "content-digest")
_DEFAULT_PORTS = {"http": 80, "https": 443}
CLOCK_SKEW = 60  # seconds a signer's clock may run ahead of ours
_ALLOWED_PARAMS = frozenset({"created", "expires", "keyid", "nonce", "tag"})


@dataclass(frozen=True)
class SignedResponse:
    """A signature found on a response, with the base it claims to sign."""

    label: str
    components: tuple[str, ...]
    params: dict[str, rfc8941.BareItem]
    base: bytes
    signature: bytes

    @property
    def keyid(self) -> str:
        return str(self.params["keyid"])


@dataclass(frozen=True)
class VerifiedSignature:
    """What a successful :func:`verify_response` vouches for."""

    label: str
    keyid: str
    created: int
    expires: int | None
    components: tuple[str, ...]
    nonce: str | None = None


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in out:  # e.g. "X-Request-Id" and "x-request-id" both given
            raise SignatureError(f"header {key!r} given twice; join repeated lines with ', '")
        out[key] = value
    return out


def _component_value(name: str, status: int, headers: Mapping[str, str]) -> str:
    if name == "@status":
        if not 100 <= status <= 999:
            raise SignatureError(f"@status {status} is not a three-digit status code")
        return str(status)
    if name.startswith("@"):
        raise SignatureError(f"derived component {name!r} is not supported on responses")
    return _header_value(name, headers, "response")


def _header_value(name: str, headers: Mapping[str, str], message: str) -> str:
    if name != name.lower() or not name:
        raise SignatureError(f"component {name!r} must be a lower-case field name")
    if name not in headers:
        raise SignatureError(f"covered header {name!r} is missing from the {message}")
    value = headers[name].strip(" \t")
    if "\n" in value or "\r" in value:
        raise SignatureError(f"header {name!r} contains a line break")
    return value


def signature_base(
    status: int,
    headers: Mapping[str, str],
    components: Sequence[str],
    params: Mapping[str, rfc8941.BareItem],
) -> bytes:
    """The RFC 9421 section 2.5 signature base for a response.

    ``params`` become the ``@signature-params`` parameters in the order given
    (signer and verifier must agree on it; the verifier takes the order from
    ``Signature-Input``). Raises :class:`SignatureError` for a missing header,
    a repeated component or an unsupported one.
    """
    hdrs = _headers(headers)
    return _base(lambda name: _component_value(name, status, hdrs), components, params)


def _signature_params(components: Sequence[str], params: Mapping[str, rfc8941.BareItem]) -> str:
    """The `@signature-params` value: also the member of `Signature-Input` that a signer sends."""
    return rfc8941.serialize_inner_list([rfc8941.Item(c) for c in components], params)


def _base(
    value_of: Callable[[str], str],
    components: Sequence[str],
    params: Mapping[str, rfc8941.BareItem],
    sig_params: str | None = None,
) -> bytes:
    """The signature base; `sig_params` when the signer has serialised the parameters already."""
    if len(set(components)) != len(components):
        raise SignatureError("a component is covered more than once")
    if "@signature-params" in components:
        raise SignatureError("@signature-params cannot be a covered component")
    lines = []
    for name in components:
        value = value_of(name)
        lines.append(f"{rfc8941.serialize_bare_item(name)}: {value}")
    if sig_params is None:
        sig_params = _signature_params(components, params)
    lines.append(f'"@signature-params": {sig_params}')
    text = "\n".join(lines)
    if not text.isascii():
        raise SignatureError("covered header values must be ASCII")
    return text.encode("ascii")


def _prepare(
    headers: Mapping[str, str],
    body: bytes,
    components: Sequence[str],
    keyid: str,
    created: int | None,
    expires: int | None,
) -> tuple[dict[str, str], dict[str, str], dict[str, rfc8941.BareItem]]:
    """What signing a response and a request share: the lower-cased headers with a checked
    (or added) Content-Digest, the headers to add, and the created/expires/keyid parameters."""
    hdrs = _headers(headers)
    added: dict[str, str] = {}
    if "content-digest" in components:
        if "content-digest" in hdrs:
            if not verify_content_digest(hdrs["content-digest"], body):
                raise SignatureError("Content-Digest does not match the body being signed")
        else:
            added["Content-Digest"] = hdrs["content-digest"] = content_digest(body)
    params: dict[str, rfc8941.BareItem] = {"created": int(time.time()) if created is None else created}
    if expires is not None:
        params["expires"] = expires
    params["keyid"] = keyid
    return hdrs, added, params


def sign_response(
    private_key: SM2PrivateKey,
    keyid: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    components: Sequence[str] = DEFAULT_COMPONENTS,
    created: int | None = None,
    expires: int | None = None,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """Sign a response; return the header fields to add to it.

    The result always has ``Signature-Input`` and ``Signature``, plus
    ``Content-Digest`` (computed from ``body``) when it is covered and not
    already in ``headers``. A given ``Content-Digest`` is checked against
    ``body`` first, so the gateway can never sign a digest of other bytes.
    """
    hdrs, added, params = _prepare(headers, body, components, keyid, created, expires)
    # `hdrs` is lower-cased already, and the parameters are serialised once for the base and
    # `Signature-Input` alike (what is signed is what is sent).
    sig_params = _signature_params(components, params)
    base = _base(lambda name: _component_value(name, status, hdrs), components, params, sig_params)
    signature = sm2.sign(private_key, base)
    added["Signature-Input"] = f"{label}={sig_params}"
    added["Signature"] = rfc8941.serialize_dictionary({label: rfc8941.Item(signature)})
    return added


def _select(dictionary: str, field: str, label: str | None) -> tuple[str, rfc8941.Item | rfc8941.InnerList]:
    try:
        members = rfc8941.parse_dictionary(dictionary)
    except ValueError as exc:
        raise SignatureError(f"{field} does not parse: {exc}") from None
    if label is None:
        if len(members) != 1:
            raise SignatureError(f"{field} has {len(members)} signatures; say which label to verify")
        label = next(iter(members))
    if label not in members:
        raise SignatureError(f"{field} has no signature labelled {label!r}")
    return label, members[label]


def signed_response(status: int, headers: Mapping[str, str], *, label: str | None = None) -> SignedResponse:
    """Parse ``Signature-Input``/``Signature`` and rebuild the signature base.

    Checks the syntax strictly (inner list of plain strings, known parameters,
    ``created`` and ``keyid`` present, no ``alg``) but not the signature: use
    it to hand the base to another verifier, or call :func:`verify_response`.
    """
    hdrs = _headers(headers)
    label, components, params, signature = _parse(hdrs, label, "response")
    base = signature_base(status, hdrs, components, params)
    return SignedResponse(label, tuple(components), dict(params), base, signature)


def _parse(
    hdrs: Mapping[str, str], label: str | None, message: str
) -> tuple[str, list[str], dict[str, rfc8941.BareItem], bytes]:
    for needed in ("signature-input", "signature"):
        if needed not in hdrs:
            raise SignatureError(f"{message} has no {needed.title()} header")
    label, sig_input = _select(hdrs["signature-input"], "Signature-Input", label)
    _, sig = _select(hdrs["signature"], "Signature", label)
    if not isinstance(sig_input, rfc8941.InnerList):
        raise SignatureError("Signature-Input member must be an inner list")
    if not isinstance(sig, rfc8941.Item) or not isinstance(sig.value, bytes) or sig.params:
        raise SignatureError("Signature member must be a byte sequence without parameters")
    components = []
    for item in sig_input.items:
        if type(item.value) is not str or item.params:
            raise SignatureError("covered components must be plain strings without parameters")
        components.append(item.value)
    params = sig_input.params
    if "alg" in params:
        raise SignatureError("alg parameter is not accepted: SM2 is implied by keyid")
    unknown = set(params) - _ALLOWED_PARAMS
    if unknown:
        raise SignatureError(f"unknown signature parameter(s): {', '.join(sorted(unknown))}")
    if type(params.get("created")) is not int:
        raise SignatureError("created parameter is missing or not an integer")
    if "expires" in params and type(params["expires"]) is not int:
        raise SignatureError("expires parameter is not an integer")
    if type(params.get("keyid")) is not str:
        raise SignatureError("keyid parameter is missing or not a string")
    if "nonce" in params and type(params["nonce"]) is not str:
        raise SignatureError("nonce parameter is not a string")
    return label, components, dict(params), sig.value


def verify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    public_keys: Callable[[str], SM2PublicKey | None],
    *,
    max_age: int | None = None,
    now: int | None = None,
    label: str | None = None,
    required: Sequence[str] = REQUIRED_COMPONENTS,
) -> VerifiedSignature:
    """Verify a signed response or raise :class:`SignatureError` saying why.

    ``public_keys`` maps a ``keyid`` to its SM2 public key (``None`` when
    unknown). Checks, in order: syntax, ``required`` components covered,
    key known, SM2 signature over the rebuilt base, ``created`` not in the
    future, ``expires``/``max_age``, and ``Content-Digest`` against ``body``.
    """
    signed = signed_response(status, headers, label=label)
    missing = [c for c in required if c not in signed.components]
    if missing:
        raise SignatureError(f"signature does not cover required component(s): {', '.join(missing)}")
    key = public_keys(signed.keyid)
    if key is None:
        raise SignatureError(f"unknown keyid {signed.keyid!r}")
    if not sm2.verify(key, signed.base, signed.signature):
        raise SignatureError("SM2 signature does not match the signature base (status, headers or params)")
    now = int(time.time()) if now is None else now
    created = int(signed.params["created"])
    expires = signed.params.get("expires")
    if created > now + CLOCK_SKEW:
        raise SignatureError("signature created in the future")
    if expires is not None and now >= int(expires):
        raise SignatureError("signature expired (expires parameter)")
    if max_age is not None and now - created > max_age:
        raise SignatureError(f"signature older than max_age={max_age}s")
    digest = _headers(headers).get("content-digest")
    if "content-digest" in signed.components and not verify_content_digest(digest or "", body):
        raise SignatureError("Content-Digest does not match the body")
    return VerifiedSignature(
        signed.label,
        signed.keyid,
        created,
        None if expires is None else int(expires),
        signed.components,
    )


# ---------------------------------------------------------------- requests


def derived_request_components(method: str, target_uri: str) -> dict[str, str]:
    """The values of RFC 9421 section 2.2's derived request components.

    ``target_uri`` is the absolute URI the request is sent to. Scheme and host
    are lower-cased and a default port (80 for http, 443 for https) is
    dropped, on both sides, so ``http://GW:80/x`` and ``http://gw/x`` sign
    alike. ``@path`` is ``/`` when empty; ``@query`` is ``?`` plus the query as
    sent (``?`` alone when there is none); the fragment is ignored.
    """
    if not method or not method.isascii() or any(c in method for c in " \t\r\n"):
        raise SignatureError("@method must be an HTTP method token")
    try:
        parts = urlsplit(target_uri)
        port = parts.port
    except ValueError as err:
        raise SignatureError(f"target URI does not parse: {err}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise SignatureError("target URI must be absolute (scheme://host/path)")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}"
    request_target = path + (query if parts.query else "")
    values = {
        "@method": method,
        "@target-uri": f"{scheme}://{authority}{request_target}",
        "@authority": authority,
        "@scheme": scheme,
        "@request-target": request_target,
        "@path": path,
        "@query": query,
    }
    for name, value in values.items():
        if not value.isascii() or any(c in value for c in "\r\n"):
            raise SignatureError(f"{name} must be ASCII without line breaks (percent-encode the URI)")
    return values


def request_signature_base(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params: Mapping[str, rfc8941.BareItem],
) -> bytes:
    """The RFC 9421 section 2.5 signature base for a request (see :func:`signature_base`)."""
    hdrs = _headers(headers)
    derived = derived_request_components(method, target_uri)

    def value_of(name: str) -> str:
        if name.startswith("@"):
            if name not in derived:
                raise SignatureError(f"derived component {name!r} is not supported on requests")
            return derived[name]
        return _header_value(name, hdrs, "request")

    return _base(value_of, components, params)


def sign_request(
    private_key: SM2PrivateKey | str | bytes,
    keyid: str,
    method: str,
    target_uri: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    components: Sequence[str] = DEFAULT_REQUEST_COMPONENTS,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """Sign a request; return the header fields to add to it.

    ``private_key`` is an :class:`SM2PrivateKey` or its PEM. The result has
    ``Content-Digest`` (SM3 of ``body``, when covered and not already in
    ``headers``), ``Signature-Input`` and ``Signature``. ``nonce`` defaults to
    128 random bits (base64url): the gateway refuses a nonce it has already
    seen, so sign every request afresh, including retries. Example::

        body = json.dumps({"query": "{ population(first: 2) { edges { node { name } } } }"}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        headers |= sign_request(open("hrss.pem").read(), "65444bd985fc03a6",
                                "POST", "https://gw.example/share/graphql", headers, body)
    """
    if isinstance(private_key, str | bytes):
        private_key = sm2.load_pem_private_key(private_key)
    hdrs, added, params = _prepare(headers or {}, body, components, keyid, created, expires)
    params["nonce"] = secrets.token_urlsafe(16) if nonce is None else nonce
    base = request_signature_base(method, target_uri, hdrs, components, params)
    signature = sm2.sign(private_key, base)
    members = [rfc8941.Item(c) for c in components]
    added["Signature-Input"] = f"{label}={rfc8941.serialize_inner_list(members, params)}"
    added["Signature"] = rfc8941.serialize_dictionary({label: rfc8941.Item(signature)})
    return added


def signed_request(
    method: str, target_uri: str, headers: Mapping[str, str], *, label: str | None = None
) -> SignedResponse:
    """Parse a request's ``Signature-Input``/``Signature`` and rebuild its signature base
    (strict syntax as :func:`signed_response`; the signature itself is not checked)."""
    hdrs = _headers(headers)
    label, components, params, signature = _parse(hdrs, label, "request")
    base = request_signature_base(method, target_uri, hdrs, components, params)
    return SignedResponse(label, tuple(components), params, base, signature)


def verify_request(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    public_keys: Callable[[str], SM2PublicKey | None],
    *,
    max_age: int | None = None,
    max_skew: int = CLOCK_SKEW,
    now: int | None = None,
    label: str | None = None,
    required: Sequence[str] = REQUIRED_REQUEST_COMPONENTS,
    require_nonce: bool = False,
) -> VerifiedSignature:
    """Verify a signed request or raise :class:`SignatureError` saying why.

    Beyond ``required``, the target must be covered: ``@target-uri``, or both
    ``@authority`` and ``@path``. Checks, in order: syntax, coverage, nonce
    present (``require_nonce``), key known, SM2 signature over the rebuilt
    base, ``created`` at most ``max_skew`` s in the future and at most
    ``max_age`` s old, ``expires``, and ``Content-Digest`` against ``body``.
    Replay (a nonce seen before) is the caller's to check, with the returned
    ``nonce`` and ``keyid``.
    """
    signed = signed_request(method, target_uri, headers, label=label)
    missing = [c for c in required if c not in signed.components]
    if "@target-uri" not in signed.components and not {"@authority", "@path"} <= set(signed.components):
        missing.append("@target-uri (or @authority and @path)")
    if missing:
        raise SignatureError(f"signature does not cover required component(s): {', '.join(missing)}")
    nonce = signed.params.get("nonce")
    if require_nonce and not nonce:
        raise SignatureError("nonce parameter is missing")
    key = public_keys(signed.keyid)
    if key is None:
        raise SignatureError(f"unknown keyid {signed.keyid!r}")
    if not sm2.verify(key, signed.base, signed.signature):
        raise SignatureError(
            "SM2 signature does not match the signature base (method, target, headers or params)"
        )
    now = int(time.time()) if now is None else now
    created = int(signed.params["created"])
    expires = signed.params.get("expires")
    if created > now + max_skew:
        raise SignatureError(f"signature created more than {max_skew}s in the future")
    if max_age is not None and now - created > max_age:
        raise SignatureError(f"signature older than max_age={max_age}s")
    if expires is not None and now >= int(expires):
        raise SignatureError("signature expired (expires parameter)")
    digest = _headers(headers).get("content-digest")
    if "content-digest" in signed.components and not verify_content_digest(digest or "", body):
        raise SignatureError("Content-Digest does not match the body")
    return VerifiedSignature(
        signed.label,
        signed.keyid,
        created,
        None if expires is None else int(expires),
        signed.components,
        None if nonce is None else str(nonce),
    )
