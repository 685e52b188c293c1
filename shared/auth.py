"""API keys: who may call the service, and which jobs are theirs.

A key is a random bearer token ``shk_{key_id}_{secret}`` shown once, when it
is created.  Redis keeps only its SHA-256 digest, so a copy of the database
cannot be replayed against the API.  Layout (``{p}`` is ``redis.key_prefix``)::

    {p}:apikey:{key_id}         JSON ApiKey (name, digest, created/revoked times)
    {p}:apikey-digest:{sha256}  key_id of the token with that digest
    {p}:apikeys                 set of every key_id (for listing)

Every job records the ``key_id`` that created it (``JobRecord.owner``); another
key is told the job does not exist (:func:`may_access`), so ids of other
tenants' jobs cannot even be confirmed.

``KeyStore`` is synchronous (the ``synchuman keys`` command, tests);
``AsyncKeyStore`` is the API's read path.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import redis
import redis.asyncio as aredis
from pydantic import BaseModel

TOKEN_PREFIX = "shk_"
KEY_ID_BYTES = 6
"""``key_id`` is 12 hex characters: short enough to print, unique enough per deployment."""
SECRET_BYTES = 32


class ApiKey(BaseModel):
    """One API key as stored; never holds the token itself."""

    key_id: str
    name: str
    digest: str
    """SHA-256 hex digest of the full token."""
    created_at: float
    revoked_at: float | None = None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class NewApiKey(BaseModel):
    """A freshly created key: the only moment its ``token`` is known."""

    key: ApiKey
    token: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization: str | None, *, prefix: str = TOKEN_PREFIX) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (an API key's unless ``prefix`` says
    otherwise), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.startswith(prefix):
        return None
    return token


def may_access(owner: str | None, key_id: str | None, *, auth_enabled: bool) -> bool:
    """Whether the caller holding ``key_id`` may see a job owned by ``owner``.

    With authentication off (the embedded stack) everything is visible; with it
    on, a job is visible only to the key that created it.  Jobs created while
    authentication was off (``owner`` None) belong to nobody once it is on.
    """
    if not auth_enabled:
        return True
    return owner is not None and key_id is not None and secrets.compare_digest(owner, key_id)


class ApiKeyKeys:
    """Redis key names of the API key tables."""

    def __init__(self, prefix: str) -> None:
        self.all = f"{prefix}:apikeys"
        self._key = f"{prefix}:apikey:"
        self._digest = f"{prefix}:apikey-digest:"

    def key(self, key_id: str) -> str:
        return self._key + key_id

    def digest(self, digest: str) -> str:
        return self._digest + digest


class KeyStore:
    """Create, revoke, list and check API keys (synchronous)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.keys = ApiKeyKeys(prefix)

    def create(self, name: str) -> NewApiKey:
        key_id = secrets.token_hex(KEY_ID_BYTES)
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        key = ApiKey(key_id=key_id, name=name, digest=token_digest(token), created_at=time.time())
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.key(key_id), key.model_dump_json(), nx=True)
        pipe.set(self.keys.digest(key.digest), key_id, nx=True)
        pipe.sadd(self.keys.all, key_id)
        created, indexed, _ = pipe.execute()
        if not (created and indexed):  # 48 random bits collided: astronomically rare, never silent
            raise RuntimeError("API key id collision; try again")
        return NewApiKey(key=key, token=token)

    def get(self, key_id: str) -> ApiKey | None:
        raw = self.redis.get(self.keys.key(key_id))
        return None if raw is None else ApiKey.model_validate_json(raw)

    def list(self) -> list[ApiKey]:
        ids = sorted(i.decode() if isinstance(i, bytes) else i for i in self.redis.smembers(self.keys.all))
        raws = self.redis.mget([self.keys.key(i) for i in ids]) if ids else []
        keys = [ApiKey.model_validate_json(raw) for raw in raws if raw is not None]
        return sorted(keys, key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key at once (its digest stops resolving); None if there is no such key."""
        key = self.get(key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key = key.model_copy(update={"revoked_at": time.time()})
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.keys.key(key_id), key.model_dump_json())
            pipe.delete(self.keys.digest(key.digest))
            pipe.execute()
        return key

    def authenticate(self, token: str) -> ApiKey | None:
        key_id = self.redis.get(self.keys.digest(token_digest(token)))
        if key_id is None:
            return None
        key = self.get(key_id.decode() if isinstance(key_id, bytes) else key_id)
        return key if key is not None and key.is_active else None


class AsyncKeyStore:
    """The API's read path: token -> active key, on ``redis.asyncio``."""

    def __init__(self, client: aredis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.keys = ApiKeyKeys(prefix)

    async def authenticate(self, token: str) -> ApiKey | None:
        key_id = await self.redis.get(self.keys.digest(token_digest(token)))
        if key_id is None:
            return None
        if isinstance(key_id, bytes):
            key_id = key_id.decode()
        raw = await self.redis.get(self.keys.key(key_id))
        if raw is None:
            return None
        key = ApiKey.model_validate_json(raw)
        return key if key.is_active else None
