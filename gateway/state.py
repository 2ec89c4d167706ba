"""The long-lived objects one gateway process shares between requests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.access_log import AccessLog
from gateway.identity.apikeys import ApiKeyVerifier
from gateway.identity.service import Identity
from gateway.identity.tokens import TokenService
from gateway.registry import SchemaRegistry
from gateway.secrets import SecretHasher
from gateway.settings import Settings
from resolvers.context import Encryptor, Principal


@dataclass
class GatewayState:
    settings: Settings
    engine: AsyncEngine
    registry: SchemaRegistry
    tokens: TokenService
    hasher: SecretHasher
    api_keys: ApiKeyVerifier
    access_log: AccessLog
    identity: Identity | None = None  # OAuth server, resource-server checks, rate limits

    def encryptor_for(self, principal: Principal) -> Encryptor | None:
        """Field encryption to the consumer's SM2 key arrives with the key store; until a
        department has a registered key there is nothing to encrypt to, so it denies."""
        return None
