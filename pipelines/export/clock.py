"""Wall-clock and CPU time of the export's phases."""

from __future__ import annotations

import time

import torch


class PhaseClock:
    """Records the time since the previous lap under a phase name.

    ``timings`` receives wall-clock seconds (after synchronising a CUDA device,
    so GPU work is charged to the phase that queued it); ``cpu_timings``, when
    given, receives the process's CPU seconds (all threads) over the same lap.
    Either dict may be None.
    """

    def __init__(
        self,
        device: torch.device,
        timings: dict[str, float] | None,
        cpu_timings: dict[str, float] | None = None,
    ) -> None:
        self.device = device
        self.timings = timings
        self.cpu_timings = cpu_timings
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()

    def lap(self, name: str) -> None:
        if self.timings is None and self.cpu_timings is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now, now_cpu = time.perf_counter(), time.process_time()
        if self.timings is not None:
            self.timings[name] = now - self.last
        if self.cpu_timings is not None:
            self.cpu_timings[name] = now_cpu - self.last_cpu
        self.last, self.last_cpu = now, now_cpu
