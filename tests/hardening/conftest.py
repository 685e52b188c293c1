"""Fixtures of the hardening tests: a real redis-server per session, cleaned per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

PREFIX = "hardening-test"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    from client.stack import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-unit"), aof=False).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_client(redis_server) -> Iterator:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()
