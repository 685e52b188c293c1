"""Per-stage time limits for workers whose pool cannot enforce them.

A GPU worker runs Celery's ``solo`` pool: the task runs in the worker's main
thread, so Celery's hard time limit (which kills a pool child) does not exist,
and a soft limit cannot interrupt a CUDA kernel or a C extension that never
returns to Python.  The watchdog is a daemon thread with one deadline at a
time: the runtime arms it when a stage starts and disarms it when the stage
ends.  If a deadline passes, the watchdog

1. calls ``on_timeout(job_id, stage, limit_s)``, which marks the job failed
   with ``timeout`` (the job store's transaction makes that exactly-once even
   if the hung stage later returns), then
2. ends the whole process with ``exit_code``: the stuck thread cannot be
   stopped any other way, and the process supervisor (compose's
   ``restart: unless-stopped``, systemd) starts a fresh, warm worker.  The
   unacknowledged message is redelivered later, and the task returns at once
   because its job is already terminal.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from shared.settings import WatchdogSettings

log = logging.getLogger("synchuman.worker.watchdog")

TIMEOUT_EXIT_CODE = 75
"""Exit status of a worker recycled by its watchdog (EX_TEMPFAIL: restart me)."""

TimeoutHandler = Callable[[str, str, float], None]


def stage_limits(settings: WatchdogSettings) -> dict[str, float]:
    """Seconds each stage may run (0: unlimited)."""
    return {"preprocess": settings.preprocess_s, "stage1": settings.stage1_s, "stage2": settings.stage2_s,
            "export": settings.export_s, "upload": settings.upload_s}


@dataclass(frozen=True)
class _Deadline:
    job_id: str
    stage: str
    limit_s: float
    at: float
    """``time.monotonic()`` value at which the stage has overrun."""


class StageWatchdog:
    """Fails a job whose stage overruns its limit, then recycles the process.

    ``limits`` maps a stage name to seconds; stages not listed (or with a limit
    of 0) are not watched.  ``exit`` is ``os._exit`` in production: a normal
    ``sys.exit`` would wait for the hung thread.
    """

    def __init__(
        self,
        limits: Mapping[str, float],
        on_timeout: TimeoutHandler,
        *,
        exit_code: int = TIMEOUT_EXIT_CODE,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.limits = {stage: float(s) for stage, s in limits.items() if s and s > 0}
        self.on_timeout = on_timeout
        self.exit_code = exit_code
        self._exit = exit
        self._deadline: _Deadline | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.fired: _Deadline | None = None
        """The deadline that fired, if one did (for tests and logs)."""

    def start(self) -> StageWatchdog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stage-watchdog", daemon=True)
            self._thread.start()
        return self

    def arm(self, job_id: str, stage: str) -> None:
        limit = self.limits.get(stage)
        with self._changed:
            self._deadline = (
                None if limit is None else _Deadline(job_id, stage, limit, time.monotonic() + limit)
            )
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None
            self._changed.notify()

    @contextmanager
    def stage(self, job_id: str, stage: str) -> Iterator[None]:
        """``with watchdog.stage(job_id, "stage1"): ...`` watches one stage."""
        self.arm(job_id, stage)
        try:
            yield
        finally:
            self.disarm()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    deadline = self._deadline
                    if deadline is None:
                        self._changed.wait()
                        continue
                    remaining = deadline.at - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(timeout=remaining)
                self._deadline = None
            self._fire(deadline)

    def _fire(self, deadline: _Deadline) -> None:
        self.fired = deadline
        log.error(
            "stage time limit exceeded; recycling worker",
            extra={"job_id": deadline.job_id, "stage": deadline.stage, "limit_s": deadline.limit_s},
        )
        try:
            self.on_timeout(deadline.job_id, deadline.stage, deadline.limit_s)
        except Exception:  # the process must still be recycled; the next start re-checks the job
            log.exception("could not mark the timed-out job failed", extra={"job_id": deadline.job_id})
        finally:
            for handler in logging.getLogger().handlers:
                handler.flush()
            self._exit(self.exit_code)
