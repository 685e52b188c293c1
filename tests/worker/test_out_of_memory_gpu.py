"""On a real GPU: an out-of-memory error is recognised and the failed attempt's memory comes back."""

from __future__ import annotations

import pytest
import torch

from worker.gpu_memory import gpu_memory_bytes, is_out_of_memory, release_failed_attempt

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

HELD_BYTES = 2 * 2**30


def _attempt_that_runs_out_of_memory() -> None:
    """A job step: holds activations, then asks for far more than the GPU has."""
    activations = [torch.ones(HELD_BYTES // 4 // 4, device="cuda") for _ in range(4)]  # 4 x 0.5 GiB float32
    total = torch.cuda.get_device_properties(0).total_memory
    torch.empty(total * 2, dtype=torch.uint8, device="cuda")  # raises
    del activations


def test_oom_is_recognised_and_the_attempt_memory_is_given_back():
    torch.cuda.synchronize()
    baseline_allocated, _ = gpu_memory_bytes("cuda")
    try:
        _attempt_that_runs_out_of_memory()
    except Exception as exc:  # noqa: BLE001 - what the worker's run_job sees
        assert is_out_of_memory(exc)
        held = torch.cuda.memory_allocated()
        assert held >= baseline_allocated + HELD_BYTES  # the traceback's frames still hold the tensors
        release_failed_attempt(exc)  # what the worker does before failing the job (worker.gpu_memory.out_of_memory_error)
        allocated, reserved = gpu_memory_bytes("cuda")
        print(f"held during OOM: {held / 2**30:.2f} GiB; after freeing: allocated "
              f"{allocated / 2**30:.2f} GiB, reserved {reserved / 2**30:.2f} GiB")
    else:
        pytest.fail("no out-of-memory error")
    assert allocated <= baseline_allocated and reserved < HELD_BYTES
    # The worker keeps serving: the same GPU runs the next job's allocations.
    assert torch.ones(HELD_BYTES // 4, device="cuda").sum().item() == HELD_BYTES // 4


def test_other_errors_are_not_out_of_memory():
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("bad input"))
    assert gpu_memory_bytes("cpu") is None
