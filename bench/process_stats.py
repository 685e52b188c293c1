"""CPU time and peak memory of the benchmarking process itself."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to a busy machine."""
    times = os.times()
    return times.user + times.system


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    Linux's ``VmHWM`` starts afresh in a process started by exec (a spawned
    child), where ``ru_maxrss`` may still carry the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
