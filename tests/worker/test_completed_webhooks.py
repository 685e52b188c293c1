"""Every way a job ends fires its ``completed`` webhook exactly once, to a loopback receiver.

One stack (Redis, the API, fault-injection workers that also deliver webhooks)
and the session's receiver; each job has its own webhook path, so each ending is checked
on its own: one ``completed`` call whose body is the job in its final state.
The storage outage's ``completed`` is checked in ``test_storage_outage``.
"""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from client.stack import RedisServer, wait_until
from shared.jobs import TERMINAL
from tests.support.fault_pipelines import CRASH_STEPS, ERROR_STEPS, HANG_STEPS, LONG_STEPS, OOM_STEPS, SLOW_STEPS
from tests.support.fault_stack import Stack
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

DELIVERY_S = 60


@pytest.fixture()
def stack(tmp_path, receiver):
    redis_server = RedisServer(tmp_path, aof=False).start()
    stack = Stack(tmp_path, redis_server, SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS='["127.0.0.1"]',
                  SYNCHUMAN_WORKER__MAX_ATTEMPTS="2", SYNCHUMAN_WORKER__HEARTBEAT_TTL_S="3",
                  SYNCHUMAN_WORKER__RECOVERY_INTERVAL_S="0.5",
                  SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S="3600").start_api()
    yield stack
    stack.stop()
    redis_server.stop()


def submit(stack: Stack, receiver: WebhookReceiver, name: str, steps: int | None = None) -> str:
    options = {"stage1_steps": steps} if steps is not None else {}
    return stack.submit_options(options, webhook_url=receiver.url(f"/hooks/{name}"))


def completed_once(stack: Stack, receiver: WebhookReceiver, name: str, job_id: str) -> dict:
    """The one ``completed`` call of job ``job_id``; fails on none or on a second one."""
    final = stack.wait_terminal(job_id, timeout_s=DELIVERY_S)
    calls = wait_until(lambda: receiver.calls_to(f"/hooks/{name}"), DELIVERY_S, f"the completed webhook of {name}")
    body = json.loads(calls[0].body)
    assert calls[0].headers["webhook-event"] == "completed" and body["id"] == job_id
    assert body["status"] == final.status.value, stack.logs()
    assert [e.status for e in final.history if e.status in TERMINAL] == [final.status]
    return body


def assert_no_second_call(receiver: WebhookReceiver, names: list[str]) -> None:
    for name in names:
        assert len(receiver.calls_to(f"/hooks/{name}")) == 1, name


def test_every_ending_fires_completed_exactly_once(stack, receiver):
    worker = stack.start_worker()
    stack.wait_warm()
    endings: dict[str, tuple[str, str | None]] = {}  # name -> (status, error code)

    ok = submit(stack, receiver, "succeeded")
    assert completed_once(stack, receiver, "succeeded", ok)["outputs"]
    endings["succeeded"] = ("succeeded", None)

    for name, steps, code in (("pipeline", ERROR_STEPS, "pipeline_error"), ("oom", OOM_STEPS, "gpu_out_of_memory")):
        body = completed_once(stack, receiver, name, submit(stack, receiver, name, steps))
        assert body["error"]["code"] == code and "/opt/models" not in body["error"]["message"]
        endings[name] = ("failed", code)

    # Behind a slow job: one canceled in the queue, one whose input vanished (the worker itself fails).
    busy = submit(stack, receiver, "busy", SLOW_STEPS)
    queued = submit(stack, receiver, "canceled-queued")
    internal = submit(stack, receiver, "internal")
    (stack.workdir / "storage" / "jobs" / internal / "input.png").unlink()
    assert httpx.post(f"{stack.api_url}/v1/jobs/{queued}/cancel").status_code == 200
    assert completed_once(stack, receiver, "canceled-queued", queued)["status"] == "canceled"
    assert completed_once(stack, receiver, "internal", internal)["error"]["code"] == "internal_error"
    assert completed_once(stack, receiver, "busy", busy)["status"] == "succeeded"
    endings.update({"canceled-queued": ("canceled", None), "internal": ("failed", "internal_error")})

    running = submit(stack, receiver, "canceled-running", LONG_STEPS)
    stack.wait_status(running, {"running"}, timeout_s=30)
    assert httpx.post(f"{stack.api_url}/v1/jobs/{running}/cancel").status_code == 202
    assert completed_once(stack, receiver, "canceled-running", running)["status"] == "canceled"

    # A job whose worker dies with a cancel pending: the API's recovery ends it.
    orphan = submit(stack, receiver, "canceled-orphan", LONG_STEPS)
    stack.wait_status(orphan, {"running"}, timeout_s=30)
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    assert httpx.post(f"{stack.api_url}/v1/jobs/{orphan}/cancel").status_code in (200, 202)
    stack.wait_terminal(orphan, timeout_s=30)
    worker = stack.start_worker()  # a webhook worker again
    assert completed_once(stack, receiver, "canceled-orphan", orphan)["status"] == "canceled"

    # A job that kills every worker that starts it: the recovery of its second death ends it worker_lost.
    poison = submit(stack, receiver, "worker-lost", CRASH_STEPS)
    wait_until(lambda: not worker.alive(), 30, "the poison job to kill its first worker")
    worker = stack.start_worker()
    wait_until(lambda: not worker.alive(), 60, "the recovered poison job to kill its second worker")
    assert stack.wait_terminal(poison, timeout_s=30).attempts == 2
    worker = stack.start_worker()
    assert completed_once(stack, receiver, "worker-lost", poison)["error"]["code"] == "worker_lost"

    # The watchdog's timeout, last: it recycles its worker.
    worker.stop()
    hung = submit(stack, receiver, "timeout", HANG_STEPS)
    stack.start_worker(SYNCHUMAN_WATCHDOG__STAGE1_S="2")
    stack.wait_terminal(hung, timeout_s=30)
    stack.start_worker()  # the recycled worker's replacement delivers the webhook
    assert completed_once(stack, receiver, "timeout", hung)["error"]["code"] == "timeout"

    assert_no_second_call(receiver, ["succeeded", "pipeline", "oom", "busy", "canceled-queued", "internal",
                                     "canceled-running", "canceled-orphan", "worker-lost", "timeout"])
