"""GPU memory on a worker: recognising out-of-memory, giving memory back, reporting it.

An out-of-memory error is a property of the job (too large for this GPU right
now), not of the worker: the job fails with ``gpu_out_of_memory`` and is not
retried (retrying the same job on the same GPU would loop), and the worker
frees what the failed attempt held so the next job starts from a clean GPU.
"""

from __future__ import annotations

import gc

from shared.errors import GpuOutOfMemoryError


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` (and the CUDA OOM RuntimeErrors of old builds)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - workers always have torch
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def out_of_memory_error(exc: BaseException) -> GpuOutOfMemoryError | None:
    """The job error for a GPU out-of-memory exception (its memory freed), or None for other errors."""
    if not is_out_of_memory(exc):
        return None
    release_failed_attempt(exc)
    return GpuOutOfMemoryError("the job did not fit in GPU memory; try smaller options or retry later")


def release_failed_attempt(exc: BaseException) -> None:
    """Give back what a failed attempt held: its traceback's frames keep its tensors alive."""
    exc.__traceback__ = None
    free_gpu_memory()


def free_gpu_memory() -> None:
    """Drop what a failed attempt left behind: Python garbage, then the CUDA cache."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_memory_bytes(device: str) -> tuple[int, int] | None:
    """``(allocated, reserved)`` bytes on ``device``, or None for CPU workers."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.device(device).index or 0
    return torch.cuda.memory_allocated(index), torch.cuda.memory_reserved(index)
