"""The export's share of the CPU: how many threads its parallel parts may use.

Two worker processes may share one GPU so that one job's export (CPU-bound
mesh clean-up, UV unwrapping, baking on a CPU device, encoding) runs while the
next job's stages use the GPU.  Their exports then also meet on the host's
cores; each process therefore gives its export a thread budget, so that the
exports split the cores instead of each one sizing its pools to the machine.

One budget per process, set once by whoever loads the pipelines
(:func:`set_export_threads`; the worker does it from its settings) and read
by the export code:

* torch's intra-op pool (the rasteriser, hole filling and texture fitting when
  they run on the CPU, and the tensor work around the GPU's) is set to the
  budget while an export runs (:func:`export_thread_limit`), and restored after;
* the nearest-vertex queries of ``simplify`` (scipy ``cKDTree.query``'s
  ``workers``) use :func:`export_threads`.

xatlas charts the pieces of a large mesh on a pool of its own, sized by the
library to the host's cores (it offers no way to resize it); pin the worker
process to a set of CPUs (a container's cpuset, ``taskset``) to bound it too.

Until a budget is set, nothing is limited: torch keeps its own pool size and
the queries use every core (a process that has the machine to itself).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

TORCH_THREADS = torch.get_num_threads()
"""The intra-op pool torch sized for this process by itself: the physical cores it may run on,
or ``OMP_NUM_THREADS`` (read when this module is first imported)."""

_budget: int | None = None
_lock = threading.Lock()


def set_export_threads(threads: int | None = None, *, processes: int = 1) -> int:
    """Give every later export of this process ``threads`` CPU threads; returns the budget.

    Without ``threads``: an equal share of :data:`TORCH_THREADS` among ``processes``
    processes whose exports may run at once (at least one thread each).
    """
    global _budget
    if threads is not None and threads < 1:
        raise ValueError(f"an export needs at least one thread, got {threads}")
    if processes < 1:
        raise ValueError(f"the cores are shared among at least one process, got {processes}")
    _budget = threads if threads is not None else max(1, TORCH_THREADS // processes)
    return _budget


def clear_export_threads() -> None:
    """No budget any more: later exports use torch's pool as it is and every core."""
    global _budget
    _budget = None


def export_threads() -> int | None:
    """The export's thread budget; None while none is set (no limit)."""
    return _budget


@contextmanager
def export_thread_limit() -> Iterator[int]:
    """torch's intra-op pool at the export's budget while the block runs; yields the pool size.

    Blocks nest (the export of a stage that already runs inside one);
    ``@export_thread_limit()`` limits every call of the function it decorates.
    Without a budget the pool is left as it is.
    """
    threads = _budget
    with _lock:
        previous = torch.get_num_threads()
        if threads is not None and previous != threads:
            torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        with _lock:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)
