"""The long-lived objects one gateway process shares between requests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.access_log import AccessLog
from gateway.crypto.encryption import encryptor_for_department
from gateway.crypto.service import DepartmentKeyDirectory
from gateway.crypto.signing import ResponseSigner
from gateway.identity.apikeys import ApiKeyVerifier
from gateway.identity.service import Identity
from gateway.identity.tokens import TokenService
from gateway.read_connections import ReadConnections
from gateway.registry import SchemaRegistry
from gateway.secrets import SecretHasher
from gateway.settings import Settings
from resolvers.context import Encryptor, Principal, PrincipalKind, Watermarking


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    registry: SchemaRegistry
    tokens: TokenService
    hasher: SecretHasher
    api_keys: ApiKeyVerifier
    access_log: AccessLog
    identity: Identity  # OAuth server, resource-server checks, rate limits
    signer: ResponseSigner
    department_keys: DepartmentKeyDirectory
    reads: ReadConnections | None = None  # the GraphQL tiers' (None: engine.connect() per request)

    def encryptor_for(self, principal: Principal) -> Encryptor | None:
        """Encrypts to the consuming department's active registered SM2 key (gateway.crypto);
        None — so the policy denies, saying why — when the department has none."""
        if principal.kind is not PrincipalKind.DEPARTMENT or not principal.consumer:
            return None
        return encryptor_for_department(self.department_keys, principal.consumer)

    def watermark_for(self, principal: Principal) -> Watermarking | None:
        """Deliveries to an identified consumer (a department, or an enterprise by API key) carry
        its watermark (policies.watermark); anonymous callers get the data as stored, and so does
        everyone when marking is off (SHUQIAO_WATERMARK=off)."""
        if not self.settings.watermark:
            return None
        if principal.kind is PrincipalKind.ANONYMOUS or not principal.consumer:
            return None
        keys = self.registry.watermark_keys
        key = keys.current if keys is not None else None
        return Watermarking(key, principal.consumer) if key is not None else None
