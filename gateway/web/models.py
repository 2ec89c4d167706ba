"""The web session table (migration 0018): people signed in to the gateway's own pages."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class WebSession(SQLModel, table=True):
    """One signed-in browser. The cookie holds a random id; the row holds its keyed hash, so a
    copy of the table opens no session. The access token the sign-in obtained is kept sealed
    (SM4-GCM, key derived from the master key) and checked on every request by the one bearer
    check, so revoking it, or disabling its person or client, ends the session."""

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=128)
    user_id: str = Field(index=True, max_length=64)
    username: str = Field(max_length=100)
    display_name: str = Field(default="", max_length=200)
    roles: str = Field(default="", max_length=500)  # space separated
    department: str | None = Field(default=None, max_length=64)
    scopes: str = Field(default="", max_length=500)  # space separated
    jti: str = Field(max_length=64)
    token_sealed: str
    csrf: str = Field(max_length=64)
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime = Field(index=True)  # never after the access token's expiry
    revoked_at: datetime | None = None
