"""Schemathesis against the live OpenAPI schema: no server errors, every answer as documented.

Real uvicorn, Redis and a Celery worker (on pipelines that finish at once, so
the synchronous ``/generate`` answers quickly), with API keys required as in
the compose deployment: every call carries a valid key.  The number of examples per
operation is bounded to keep the run to about a minute on a CPU machine.
"""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from client.stack import RedisServer
from shared.auth import KeyStore
from tests.support.fault_stack import Stack

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    redis_server = RedisServer(workdir, aof=False).start()
    stack = Stack(workdir, redis_server,
                  SYNCHUMAN_WORKER__PIPELINE_FACTORY="bench.quick_pipelines:load_quick_pipelines",
                  SYNCHUMAN_API__GENERATE_TIMEOUT_S="20", SYNCHUMAN_AUTH__ENABLED="true").start_api()
    stack.start_worker()
    stack.wait_warm()
    client = redis.Redis.from_url(redis_server.url)
    stack.token = KeyStore(client, prefix=stack.prefix).create("fuzzer").token
    client.close()
    yield stack
    stack.stop()
    redis_server.stop()


@pytest.fixture(scope="module")
def live_schema(live_stack):
    return schemathesis.openapi.from_url(f"{live_stack.api_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_live_api_conforms_to_its_schema(case, live_stack):
    case.call_and_validate(
        base_url=live_stack.api_url,
        headers={"Authorization": f"Bearer {live_stack.token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        timeout=60,
    )
