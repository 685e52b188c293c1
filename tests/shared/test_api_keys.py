"""API keys against a real Redis: stored only as digests, revocable, scoped to their jobs."""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis

from shared.auth import AsyncKeyStore, KeyStore, bearer_token, may_access, token_digest

PREFIX = "api-keys-test"
"""Key prefix of this module's records in the session's Redis (``redis_client``)."""


def test_created_key_authenticates_and_only_its_digest_is_stored(redis_client):
    store = KeyStore(redis_client, prefix=PREFIX)
    new = store.create("ci")
    assert new.token.startswith(f"shk_{new.key.key_id}_")
    assert store.authenticate(new.token).key_id == new.key.key_id
    dump = b"".join(
        (redis_client.dump(k) or b"") + k for k in redis_client.scan_iter(match=f"{PREFIX}:*")
    )
    secret = new.token.split("_", 2)[2].encode()
    assert secret not in dump and new.token.encode() not in dump
    assert token_digest(new.token).encode() in dump


def test_unknown_or_altered_token_is_refused(redis_client):
    store = KeyStore(redis_client, prefix=PREFIX)
    new = store.create("ci")
    assert store.authenticate(new.token[:-1] + ("A" if new.token[-1] != "A" else "B")) is None
    assert store.authenticate("shk_000000000000_nothing") is None


def test_revoked_key_stops_working_at_once_and_stays_listed(redis_client):
    store = KeyStore(redis_client, prefix=PREFIX)
    keep, drop = store.create("keep"), store.create("drop")
    revoked = store.revoke(drop.key.key_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert store.authenticate(drop.token) is None
    assert store.authenticate(keep.token) is not None
    listed = {k.key_id: k for k in store.list()}
    assert set(listed) == {keep.key.key_id, drop.key.key_id}
    assert listed[drop.key.key_id].revoked_at is not None and listed[keep.key.key_id].is_active
    assert store.revoke("nosuchkey") is None


def test_async_store_agrees_with_the_sync_store(redis_server, redis_client):
    new = KeyStore(redis_client, prefix=PREFIX).create("async")

    async def check() -> tuple:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            store = AsyncKeyStore(client, prefix=PREFIX)
            return await store.authenticate(new.token), await store.authenticate(new.token + "x")
        finally:
            await client.aclose()

    good, bad = asyncio.run(check())
    assert good.key_id == new.key.key_id and bad is None


def test_bearer_header_parsing():
    assert bearer_token("Bearer shk_abc_def") == "shk_abc_def"
    assert bearer_token("bearer   shk_abc_def ") == "shk_abc_def"
    assert bearer_token("Basic shk_abc_def") is None
    assert bearer_token("Bearer sometoken") is None
    assert bearer_token(None) is None and bearer_token("") is None


def test_jobs_are_visible_only_to_their_owner_when_auth_is_on():
    assert may_access("k1", "k1", auth_enabled=True)
    assert not may_access("k1", "k2", auth_enabled=True)
    assert not may_access(None, "k2", auth_enabled=True)
    assert not may_access("k1", None, auth_enabled=True)
    assert may_access("k1", "k2", auth_enabled=False)
