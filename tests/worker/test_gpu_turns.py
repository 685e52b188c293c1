"""Workers sharing a GPU take turns: one lock per GPU, released by the kernel when its holder dies.

Each test holds the turn in a real second process (``python -c``) and takes it
here, as two worker processes on one host do.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from worker.gpu_turns import GpuTurns, gpu_lock_name

REPO = Path(__file__).resolve().parents[2]


def hold_turn(lock: Path, seconds: float) -> subprocess.Popen:
    """A process that takes the turn, says so on stdout, keeps it ``seconds`` and exits."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from worker.gpu_turns import GpuTurns
        turns = GpuTurns(Path({str(lock)!r}))
        turns.take(check=lambda: None)
        print("holding", flush=True)
        time.sleep({seconds})
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_turn_waits_for_the_holder_to_give_it_back(tmp_path):
    lock = tmp_path / "gpu-test.lock"
    holder = hold_turn(lock, 1.5)
    turns = GpuTurns(lock)
    waited = turns.take(check=lambda: None)
    assert holder.wait(timeout=10) == 0
    assert 1.0 <= waited <= 5.0 and turns.held
    turns.give_back()
    assert not turns.held
    assert GpuTurns(lock).take(check=lambda: None) < 0.5  # free again at once


def test_a_killed_holder_frees_the_gpu_at_once(tmp_path):
    lock = tmp_path / "gpu-test.lock"
    holder = hold_turn(lock, 600)
    started = time.perf_counter()
    holder.send_signal(signal.SIGKILL)
    turns = GpuTurns(lock)
    turns.take(check=lambda: None)
    assert time.perf_counter() - started < 5.0
    holder.wait(timeout=10)
    turns.give_back()


def test_a_cancel_while_waiting_ends_the_wait_without_the_turn(tmp_path):
    lock = tmp_path / "gpu-test.lock"
    holder = hold_turn(lock, 600)
    try:
        deadline = time.perf_counter() + 0.3

        def check() -> None:
            if time.perf_counter() > deadline:
                raise RuntimeError("canceled")

        turns = GpuTurns(lock)
        with pytest.raises(RuntimeError, match="canceled"):
            turns.take(check=check)
        assert not turns.held
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_the_lock_name_is_the_device_on_a_machine_without_cuda():
    assert gpu_lock_name("cpu") == "gpu-cpu"
