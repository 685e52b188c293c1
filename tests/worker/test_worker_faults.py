"""Faults a worker must survive, each with real processes.

Redis (AOF on), uvicorn and Celery workers run as subprocesses; the workers
load the fault-injection pipelines through the pipeline-factory hook, so a job
asks for its fault with its ``stage1_steps`` option.  "Exactly once" is read
from each record's history: one terminal event, never followed by another.
"""

from __future__ import annotations

import signal
import time

import pytest

from client.stack import RedisServer, wait_until
from shared.jobs import TERMINAL, JobStatus
from tests.support.fault_pipelines import (
    CRASH_STEPS,
    HANG_STEPS,
    LONG_STEPS,
    OOM_STEPS,
    OVERRUN_STEP_COUNT,
    OVERRUN_STEPS,
    SLOW_STEP_S,
    SLOW_STEPS,
    STAGE2_HANG_STEPS,
)
from tests.support.fault_stack import Stack
from worker.watchdog import TIMEOUT_EXIT_CODE

pytestmark = pytest.mark.slow

VISIBILITY_S = 4


def terminal_events(record) -> list[JobStatus]:
    return [event.status for event in record.history if event.status in TERMINAL]


@pytest.fixture(scope="module")
def redis_aof(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), aof=True).start()
    yield server
    server.stop()


@pytest.fixture()
def stack(redis_aof, tmp_path):
    """A fresh API (own key prefix) on the module's Redis; failing asserts print its logs."""
    stack = Stack(tmp_path, redis_aof, SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S=str(VISIBILITY_S),
                  SYNCHUMAN_WORKER__MAX_ATTEMPTS="2").start_api()
    yield stack
    stack.stop()


def test_gpu_out_of_memory_fails_the_job_once_and_the_worker_keeps_serving(stack):
    worker = stack.start_worker()
    stack.wait_warm()
    oom = stack.wait_terminal(stack.submit(steps=OOM_STEPS))
    assert oom.status is JobStatus.failed, stack.logs()
    assert oom.error.code == "gpu_out_of_memory" and oom.error.retryable is False
    ok = stack.wait_terminal(stack.submit())
    assert ok.status is JobStatus.succeeded and ok.worker_id == oom.worker_id and worker.alive()
    time.sleep(VISIBILITY_S + 1.5)  # long enough for a redelivery, if there were one
    again = stack.record(oom.id)
    assert again.attempts == 1 and terminal_events(again) == [JobStatus.failed]
    assert stack.failures_counted() == {"gpu_out_of_memory": 1}


def test_a_hung_stage_is_failed_with_timeout_and_the_worker_recycled(stack):
    worker = stack.start_worker(SYNCHUMAN_WATCHDOG__STAGE1_S="2")
    stack.wait_warm()
    started = time.monotonic()
    hung = stack.wait_terminal(stack.submit(steps=HANG_STEPS), timeout_s=30)
    assert hung.status is JobStatus.failed and hung.error.code == "timeout", stack.logs()
    assert hung.stage.value == "stage1" and 2 <= time.monotonic() - started < 20
    assert worker.wait(20) == TIMEOUT_EXIT_CODE
    stack.start_worker(SYNCHUMAN_WATCHDOG__STAGE1_S="2")  # what the supervisor does
    ok = stack.wait_terminal(stack.submit(), timeout_s=60)
    assert ok.status is JobStatus.succeeded, stack.logs()
    time.sleep(VISIBILITY_S + 1.5)  # the hung job's message comes back and is dropped
    again = stack.record(hung.id)
    assert again.attempts == 1 and terminal_events(again) == [JobStatus.failed]
    assert stack.failures_counted() == {"timeout": 1}


def test_a_timed_out_job_leaves_no_stage1_files_behind(stack):
    worker = stack.start_worker(SYNCHUMAN_WATCHDOG__STAGE2_S="2")
    stack.wait_warm()
    job = stack.submit_options({"stage2_steps": STAGE2_HANG_STEPS})
    stage1_dir = stack.workdir / "storage" / "jobs" / job / "stage1"
    published = wait_until(lambda: stack.record(job).outputs or None, 30, "the stage-1 files to be published")
    assert any(key.startswith("stage1/") for key in published) and any(stage1_dir.iterdir())
    hung = stack.wait_terminal(job, timeout_s=30)
    assert hung.status is JobStatus.failed and hung.error.code == "timeout", stack.logs()
    assert hung.stage.value == "stage2" and hung.outputs == {}
    assert worker.wait(20) == TIMEOUT_EXIT_CODE
    assert not stage1_dir.exists() or not any(stage1_dir.rglob("*")), "the timed-out job's files were left behind"
    assert (stack.workdir / "storage" / "jobs" / job).is_dir()  # its input stays for the record's lifetime


def test_a_poison_job_is_failed_after_the_attempt_limit_and_the_queue_keeps_moving(stack):
    poison = stack.submit(steps=CRASH_STEPS)
    behind = stack.submit()
    restarts = 0
    stack.start_worker()

    def supervise_until_done():
        nonlocal restarts
        if not stack.workers[-1].alive():
            restarts += 1
            stack.start_worker()
        record = stack.record(poison)
        return record if record.status.is_terminal and stack.record(behind).status.is_terminal else None

    record = wait_until(supervise_until_done, 90, "the poison job to be given up", interval=0.2)
    assert record.status is JobStatus.failed and record.error.code == "worker_lost", stack.logs()
    assert record.attempts == 2 and restarts == 2
    assert terminal_events(record) == [JobStatus.failed]
    assert stack.record(behind).status is JobStatus.succeeded
    assert stack.failures_counted() == {"worker_lost": 1}


def test_jobs_survive_a_redis_restart_and_each_finishes_exactly_once(stack, redis_aof):
    stack.start_worker()
    stack.wait_warm()
    jobs = [stack.submit(steps=SLOW_STEPS) for _ in range(4)]
    stack.wait_status(jobs[0], {"running"}, timeout_s=30)
    redis_aof.restart(down_s=1.0)  # SIGKILL: only what AOF fsynced survives
    finals = [stack.wait_terminal(job, timeout_s=90) for job in jobs]
    assert [f.status for f in finals] == [JobStatus.succeeded] * 4, stack.logs()
    for final in finals:
        assert terminal_events(final) == [JobStatus.succeeded]
        assert set(final.outputs) >= {"stage2/output.glb", "results.zip"}


def test_sigterm_mid_job_hands_the_job_to_another_worker(stack):
    workers = [stack.start_worker(), stack.start_worker()]
    stack.wait_warm(2)
    job = stack.submit(steps=LONG_STEPS)
    running = stack.wait_status(job, {"running"}, timeout_s=30)
    [busy] = [w for w in workers if f"-{w.pid}-" in running.worker_id]
    busy.signal(signal.SIGTERM)
    assert busy.wait(20) == 0  # it stopped at the next step, well before the job's end
    assert not stack.record(job).status.is_terminal  # given back (queued, or already taken again), not finished
    final = stack.wait_terminal(job, timeout_s=60)
    assert final.status is JobStatus.succeeded, stack.logs()
    assert final.worker_id != running.worker_id
    assert terminal_events(final) == [JobStatus.succeeded]
    assert [e.status for e in final.history] == [JobStatus.running, JobStatus.queued, JobStatus.running,
                                                 JobStatus.succeeded]  # given back to the queue, then run again
    assert final.attempts == 1  # the released attempt does not count


def test_a_job_outliving_the_visibility_timeout_is_finished_once_by_its_newest_attempt(stack):
    workers = [stack.start_worker(), stack.start_worker()]
    stack.wait_warm(2)
    job = stack.submit(steps=OVERRUN_STEPS)
    first = stack.wait_status(job, {"running"}, timeout_s=30)

    def claimed_by_another():
        record = stack.record(job)
        return record if record.worker_id not in (None, first.worker_id) else None

    second = wait_until(claimed_by_another, 20, "the redelivered job to be claimed by the other worker")
    assert second.attempts == 2 and second.status is JobStatus.running
    final = stack.wait_terminal(job, timeout_s=60)
    assert final.status is JobStatus.succeeded, stack.logs()
    assert final.worker_id == second.worker_id and final.attempts == 2
    assert terminal_events(final) == [JobStatus.succeeded]
    # The outcome is the newer attempt's, written after its whole run, not the older one's.
    claimed_at = [e.at for e in final.history if e.status is JobStatus.running][-1]
    assert final.finished_at - claimed_at >= 0.9 * OVERRUN_STEP_COUNT * SLOW_STEP_S
    assert "attempt stopped" in stack.logs()  # the older attempt gave up at its next step
    assert all(worker.alive() for worker in workers)


def test_a_job_that_loses_redis_past_the_retry_window_is_never_blamed_on_the_model(stack, redis_aof):
    worker = stack.start_worker(SYNCHUMAN_WORKER__REDIS_RETRY_S="1")
    stack.wait_warm()
    job = stack.submit(steps=LONG_STEPS)
    stack.wait_status(job, {"running"}, timeout_s=30)
    redis_aof.kill()  # down until the worker has given up writing the job's stage-1 files and its failure
    wait_until(lambda: "redis unreachable past the retry window" in worker.output(), 60,
               "the worker to give up on Redis")
    time.sleep(3)
    redis_aof.start()
    final = stack.wait_terminal(job, timeout_s=90)
    assert terminal_events(final) == [final.status], stack.logs()
    if final.status is JobStatus.failed:  # the failure could be written once Redis came back
        assert final.error.code == "queue_unavailable" and final.error.retryable, final.error
    else:  # or not even that: the job was given back to the queue and ran again
        assert final.status is JobStatus.succeeded and JobStatus.queued in [e.status for e in final.history]
    assert "pipeline_error" not in stack.failures_counted()
