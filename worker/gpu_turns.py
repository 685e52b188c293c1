"""Workers sharing one GPU take turns at its stages, so one job's export overlaps the next job's GPU work.

With ``workers_per_gpu`` worker processes on one GPU, two jobs that start
together would otherwise run stage 1 side by side (each at half speed), then
stage 2, then both exports on the CPU while the GPU idles, and stay in step
job after job.  A turn is an exclusive lock on a file named after the GPU: a
worker holds it from the start of stage 1 until its job enters the export
(or ends), so the next worker's stages run on the GPU while this one's export
runs on the CPU, and every job's GPU stages run at full speed.

The lock is ``flock`` on ``{lock_dir}/gpu-{id}.lock``; ``lock_dir`` must be
shared by the workers of one host (compose mounts the compile-cache volume in
every worker).  The kernel drops the lock of a process that dies, so a killed
worker never blocks the others.  A waiting worker checks its job between
tries, so a cancel or a shutdown ends the wait at once.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger("synchuman.worker")

POLL_S = 0.05
"""Seconds between tries while another worker holds the GPU."""


class GpuTurns:
    """This process's turn at one GPU: :meth:`take` waits for it, :meth:`give_back` ends it."""

    def __init__(self, lock_path: Path) -> None:
        self.lock_path = lock_path
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def take(self, check: Callable[[], None]) -> float:
        """Wait for the GPU; returns the seconds waited.  ``check()`` runs between tries and may raise
        (a cancel, a shutdown); the turn is then not taken."""
        if self._handle is not None:
            return 0.0
        started = time.perf_counter()
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a")
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    check()
                    time.sleep(POLL_S)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return time.perf_counter() - started

    def give_back(self) -> None:
        """End the turn (no-op when none is held)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def gpu_lock_name(device: str) -> str:
    """A name for ``device`` that is the same in every container of the host: the GPU's UUID on CUDA."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index
        properties = torch.cuda.get_device_properties(index if index is not None else torch.cuda.current_device())
        uuid = getattr(properties, "uuid", None)
        if uuid is not None:
            return f"gpu-{uuid}"
    return "gpu-" + device.replace(":", "-")
