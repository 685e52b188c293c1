"""The stage watchdog: fires once per overrun stage, never for a stage that ends in time."""

from __future__ import annotations

import threading
import time

from worker.watchdog import TIMEOUT_EXIT_CODE, StageWatchdog


def _watchdog(limits):
    fired, exits = [], []
    done = threading.Event()

    def on_timeout(job_id, stage, limit_s):
        fired.append((job_id, stage, limit_s))

    def fake_exit(code):
        exits.append(code)
        done.set()

    return StageWatchdog(limits, on_timeout, exit=fake_exit).start(), fired, exits, done


def test_an_overrun_stage_fails_its_job_then_exits():
    watchdog, fired, exits, done = _watchdog({"stage1": 0.2})
    watchdog.arm("job-1", "stage1")
    assert done.wait(3)
    assert fired == [("job-1", "stage1", 0.2)] and exits == [TIMEOUT_EXIT_CODE]


def test_stages_that_finish_in_time_or_have_no_limit_are_left_alone():
    watchdog, fired, exits, done = _watchdog({"stage1": 0.3, "stage2": 0})
    for _ in range(3):
        with watchdog.stage("job-2", "stage1"):
            time.sleep(0.1)
    with watchdog.stage("job-2", "stage2"):  # limit 0: not watched
        time.sleep(0.4)
    with watchdog.stage("job-2", "upload"):  # not listed: not watched
        time.sleep(0.1)
    assert not done.wait(0.5)
    assert fired == [] and exits == []


def test_rearming_for_the_next_stage_replaces_the_deadline():
    watchdog, fired, exits, done = _watchdog({"stage1": 0.3, "stage2": 0.6})
    watchdog.arm("job-3", "stage1")
    time.sleep(0.2)
    watchdog.arm("job-3", "stage2")  # stage 1 ended in time; stage 2 overruns
    assert done.wait(3)
    assert fired == [("job-3", "stage2", 0.6)]


def test_the_process_is_recycled_even_if_the_job_cannot_be_marked():
    exits = []
    done = threading.Event()

    def broken(*_):
        raise ConnectionError("redis is down")

    def fake_exit(code):
        exits.append(code)
        done.set()

    StageWatchdog({"stage1": 0.1}, broken, exit=fake_exit).start().arm("job-4", "stage1")
    assert done.wait(3) and exits == [TIMEOUT_EXIT_CODE]
