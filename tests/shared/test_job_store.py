"""The Redis job store and the job state machine, against a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import redis
import redis.asyncio as aredis

from shared.errors import IllegalTransitionError, JobNotFoundError
from shared.heartbeat import WorkerHeartbeat, list_workers, list_workers_async, publish, withdraw
from shared.job_store import JobStore
from shared.jobs import ALLOWED, JobRecord, JobStage, JobStatus, new_job_id, overall_progress, transition


@pytest.fixture
def store(redis_url) -> JobStore:
    client = redis.Redis.from_url(redis_url)
    yield JobStore(client, prefix=f"store-{uuid.uuid4().hex[:8]}", retention_s=3600)
    client.close()


def new_record() -> JobRecord:
    job_id = new_job_id()
    return JobRecord(id=job_id, input_key=f"jobs/{job_id}/input.png", options={"seed": 1})


def test_created_jobs_get_queue_positions_in_submission_order(store):
    records = [new_record() for _ in range(3)]
    assert [store.create(r) for r in records] == [1, 2, 3]
    store.transition(records[0].id, JobStatus.running, attempts=1)
    assert store.queue_position(records[0].id) is None
    assert [store.queue_position(r.id) for r in records[1:]] == [1, 2]


def test_record_round_trips_and_expires_after_retention(store):
    record = new_record()
    store.create(record)
    assert store.get(record.id) == record
    ttl = store.redis.ttl(store.keys.job(record.id))
    assert 3500 < ttl <= 3600


def test_illegal_transition_is_refused_and_writes_nothing(store):
    record = new_record()
    store.create(record)
    store.transition(record.id, JobStatus.running, attempts=1)
    done = store.transition(record.id, JobStatus.succeeded, outputs={"a": "b"})
    with pytest.raises(IllegalTransitionError):
        store.transition(record.id, JobStatus.running)
    with pytest.raises(IllegalTransitionError):
        store.transition(record.id, JobStatus.queued)
    assert store.get(record.id) == done


@pytest.mark.parametrize("status", list(JobStatus))
def test_terminal_states_allow_no_way_out(status):
    record = new_record().model_copy(update={"status": status})
    for target in JobStatus:
        if target in ALLOWED[status]:
            assert transition(record, target).status is target
        else:
            with pytest.raises(IllegalTransitionError):
                transition(record, target)
    assert (ALLOWED[status] == frozenset()) == status.is_terminal


def test_concurrent_starts_let_exactly_one_worker_win(store, redis_url):
    record = new_record()
    store.create(record)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def start(worker: str) -> None:
        client = JobStore.from_url(redis_url, prefix=store.keys.prefix, retention_s=3600)

        def claim(current: JobRecord):
            if current.status is not JobStatus.queued:
                return None
            return transition(current, JobStatus.running, worker_id=worker, attempts=current.attempts + 1)

        barrier.wait()
        result = client.update(record.id, claim)
        if result.worker_id == worker:
            winners.append(worker)

    threads = [threading.Thread(target=start, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    final = store.get(record.id)
    assert final.worker_id == winners[0] and final.attempts == 1
    assert [e.status for e in final.history] == [JobStatus.running]


def test_cancel_of_queued_job_is_immediate_and_of_running_job_is_a_request(store):
    queued, running = new_record(), new_record()
    store.create(queued)
    store.create(running)
    store.transition(running.id, JobStatus.running, attempts=1)
    assert store.request_cancel(queued.id).status is JobStatus.canceled
    assert store.queue_position(queued.id) is None
    flagged = store.request_cancel(running.id)
    assert flagged.status is JobStatus.running and flagged.cancel_requested


def test_unknown_job_raises_not_found(store):
    with pytest.raises(JobNotFoundError):
        store.get("nope")
    with pytest.raises(JobNotFoundError):
        store.transition("nope", JobStatus.running)


def test_duration_average_moves_toward_new_jobs(store):
    store.record_duration(10.0)
    store.record_duration(20.0)
    assert float(store.redis.get(store.keys.job_seconds)) == pytest.approx(12.0)


def test_overall_progress_spans_stages_in_order():
    values = [overall_progress(stage, step, 4) for stage in JobStage for step in range(5)]
    assert values == sorted(values)
    assert values[0] == 0.0 and values[-1] == 100.0


def test_workers_are_listed_from_their_index_and_expired_ones_leave_it(store, redis_url):
    def beat(worker_id: str) -> WorkerHeartbeat:
        return WorkerHeartbeat(worker_id=worker_id, hostname="h", pid=1, pipeline="preview",
                               pipeline_version="1", device="cpu")

    # Thousands of other keys are not walked: only the index is read.
    for i in range(2000):
        store.redis.set(f"{store.keys.prefix}:job:filler-{i}", "x", ex=60)
    publish(store.redis, store.keys, beat("w2"), ttl_s=60)
    publish(store.redis, store.keys, beat("w1"), ttl_s=1)
    publish(store.redis, store.keys, beat("w3"), ttl_s=60)
    assert [w.worker_id for w in list_workers(store.redis, store.keys)] == ["w1", "w2", "w3"]

    withdraw(store.redis, store.keys, "w3")
    time.sleep(1.2)  # w1's heartbeat expires
    assert [w.worker_id for w in list_workers(store.redis, store.keys)] == ["w2"]
    assert store.redis.smembers(store.keys.workers) == {b"w2"}

    async def listed() -> list[str]:
        client = aredis.Redis.from_url(redis_url)
        try:
            return [w.worker_id for w in await list_workers_async(client, store.keys)]
        finally:
            await client.aclose()

    assert asyncio.run(listed()) == ["w2"]
