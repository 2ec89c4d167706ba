"""The one bearer-token check for every endpoint that takes an access token (RFC 6750).

In the style of Authlib's `ResourceProtector` and `BearerTokenValidator` (whose hooks are
synchronous, hence this small async twin): parse the Authorization header, authenticate the
token (signature, expiry, audience; ours or, where the endpoint allows, a trusted external
issuer's), check it is still live (its jti not revoked, its client and its person not
disabled), then check the scope the endpoint requires. Nothing else in the gateway verifies
an access token (tests/identity/test_bearer.py checks that structurally).

Refusals carry RFC 6750 challenges: 401 without an error code when no credentials came,
`invalid_request` for a malformed header, `invalid_token` (expired, forged, revoked, disabled:
the client is not told which), 403 `insufficient_scope` with the scope needed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import TokenValidator
from starlette.requests import Request

from gateway.identity.tokens import SHARE_AUDIENCE, InvalidToken, TokenClaims, peek_claims, peek_header
from gateway.problems import Problem

if TYPE_CHECKING:
    from gateway.identity.service import Identity

# RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token
_CREDENTIALS = re.compile(r"([A-Za-z]+) +([A-Za-z0-9\-._~+/]+=*)")


class BearerRefused(Problem):
    """The request may not proceed; `message` is safe to show, `headers` carry the challenge."""

    def __init__(self, status: int, message: str, challenge: str) -> None:
        code = "FORBIDDEN" if status == 403 else "UNAUTHENTICATED"
        super().__init__(status, message, code, {"WWW-Authenticate": challenge})
        # A valid token that lacks the scope still names its principal, for the audit event.
        self.claims: TokenClaims | None = None


async def verify_token(
    identity: Identity, token: str, audience: str | None, *, external: bool = False
) -> TokenClaims:
    """Signature, expiry and audience: one of our access tokens, or (with `external`) one from a
    trusted issuer. Not liveness: see `is_live`. Raises InvalidToken, whose text is for logs."""
    if identity.tokens.verified_before(token):  # ours: no need to decode it to route it
        return identity.tokens.verify(token, audience)
    header = peek_header(token)
    unverified = peek_claims(token)
    if unverified.get("iss") == identity.tokens.issuer:
        return identity.tokens.verify(token, audience)
    if not external or audience not in (None, SHARE_AUDIENCE):
        raise InvalidToken("external tokens reach the share tier only")
    return await identity.external.verify(token, header, unverified)


async def is_live(identity: Identity, claims: TokenClaims) -> bool:
    """Not revoked, and neither its client nor its person disabled — as every worker knows it,
    at most `RevocationList.interval` (one second) after the change was committed."""
    return await identity.revocations.refusal(claims) is None


class BearerProtector:
    """One endpoint's bearer requirements: realm, audience, the scopes that admit (any one of
    `scopes`, each a space-separated set, as in Authlib), external issuers or not."""

    def __init__(
        self,
        identity: Identity,
        *,
        realm: str,
        audience: str | None = None,
        scopes: Sequence[str] = (),
        external: bool = False,
        resource_metadata: str | None = None,
        need_department: bool = False,
    ) -> None:
        self.identity = identity
        self.audience = audience
        self.scopes = list(scopes)
        self.external = external
        self.need_department = need_department
        self._challenge = f'Bearer realm="{realm}"'
        if resource_metadata:  # RFC 9728 section 5.1
            self._challenge += f', resource_metadata="{resource_metadata}"'

    def _refuse(
        self, status: int, message: str, error: str | None = None, scope: str | None = None
    ) -> BearerRefused:
        challenge = self._challenge
        if error:
            challenge += f', error="{error}"'
        if scope:
            challenge += f', scope="{scope}"'
        return BearerRefused(status, message, challenge)

    def parse(self, authorization: str | None) -> str:
        """The token of an `Authorization: Bearer <b64token>` header: one scheme, case-insensitive."""
        if not authorization:
            raise self._refuse(401, "A bearer token is required.")
        match = _CREDENTIALS.fullmatch(authorization.strip())
        if match is None or match.group(1).lower() != "bearer":
            raise self._refuse(401, "Use the Bearer scheme with one token (RFC 6750).", "invalid_request")
        return match.group(2)

    async def authenticate_token(self, token: str) -> TokenClaims:
        try:
            claims = await verify_token(self.identity, token, self.audience, external=self.external)
        except InvalidToken:
            claims = None
        if claims is None or not await is_live(self.identity, claims):
            raise self._refuse(401, "The access token is invalid or expired.", "invalid_token")
        return claims

    def validate_scope(self, claims: TokenClaims) -> None:
        lacking = TokenValidator.scope_insufficient(" ".join(sorted(claims.scopes)), self.scopes)
        if lacking or (self.need_department and not claims.department):
            needed = " or ".join(self.scopes)
            first = self.scopes[0] if self.scopes else None
            raise self._refuse(403, f"The token lacks the {needed} scope.", "insufficient_scope", first)

    async def validate_request(self, request: Request) -> TokenClaims:
        """Parse, authenticate, check liveness and scope; the token's claims, or BearerRefused."""
        sent = request.headers.getlist("authorization")
        if len(sent) > 1:  # one set of credentials per request
            raise self._refuse(401, "Send one Authorization header.", "invalid_request")
        token = self.parse(sent[0] if sent else None)
        claims = await self.authenticate_token(token)
        try:
            self.validate_scope(claims)
        except BearerRefused as refused:
            refused.claims = claims
            raise
        return claims
