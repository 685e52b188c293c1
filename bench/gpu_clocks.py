"""What the GPU's clocks and power did while a benchmark ran (NVML, sampled every 20 ms).

A busy H100 runs into its board power limit: the driver then lowers the SM
clock, so a kernel's time depends on how densely the GPU is kept busy, not only
on its own code.  Benchmarks report these numbers beside their timings so that
two runs can be compared fairly::

    with ClockMonitor() as clocks:
        run_the_job()
    print(clocks.summary())  # {"sm_clock_mhz_mean": 1759, "power_w_mean": 618, "power_capped": 0.99, ...}

Needs ``nvidia-ml-py`` (``pynvml``); without it, or without a GPU, the summary is empty.
"""

from __future__ import annotations

import threading
import time
from typing import Any

POWER_CAP_REASONS = 0x4 | 0x80
"""NVML throttle-reason bits for the software power cap and hardware power brake."""


class ClockMonitor:
    """Context manager sampling SM clock, power draw and throttle reasons on one GPU."""

    def __init__(self, device_index: int = 0, interval_s: float = 0.02) -> None:
        self.device_index = device_index
        self.interval_s = interval_s
        self.samples: list[tuple[int, float, int]] = []  # (SM MHz, watts, throttle-reason bits)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None

    def __enter__(self) -> ClockMonitor:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
        except Exception:  # no NVML library or no GPU: report nothing
            return self
        self._nvml = pynvml
        self._thread = threading.Thread(target=self._sample, args=(handle,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, handle: Any) -> None:
        nvml = self._nvml
        while not self._stop.is_set():
            self.samples.append((
                nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
            ))
            time.sleep(self.interval_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._nvml.nvmlShutdown()

    def summary(self) -> dict[str, float]:
        """Mean and minimum SM clock, mean power, and the fraction of samples held at the power limit."""
        if not self.samples:
            return {}
        clocks = [s[0] for s in self.samples]
        watts = [s[1] for s in self.samples]
        capped = sum(1 for s in self.samples if s[2] & POWER_CAP_REASONS)
        return {
            "sm_clock_mhz_mean": round(sum(clocks) / len(clocks)),
            "sm_clock_mhz_min": min(clocks),
            "power_w_mean": round(sum(watts) / len(watts)),
            "power_capped": round(capped / len(self.samples), 2),
        }
