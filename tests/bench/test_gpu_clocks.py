"""The benchmarks' clock report: what it concludes from NVML samples, and silence without a GPU."""

from __future__ import annotations

import pytest
import torch

from bench.gpu_clocks import ClockMonitor

SW_POWER_CAP = 0x4
HW_POWER_BRAKE = 0x80
GPU_IDLE = 0x1


def test_summary_counts_power_capped_samples():
    monitor = ClockMonitor()
    monitor.samples = [
        (1980, 420.0, 0),
        (1755, 699.0, SW_POWER_CAP),
        (1545, 700.0, SW_POWER_CAP | GPU_IDLE),
        (1800, 650.0, HW_POWER_BRAKE),
    ]
    assert monitor.summary() == {
        "sm_clock_mhz_mean": 1770,
        "sm_clock_mhz_min": 1545,
        "power_w_mean": 617,
        "power_capped": 0.75,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU has clocks to report")
def test_no_gpu_reports_nothing():
    with ClockMonitor(interval_s=0.001) as monitor:
        pass
    assert monitor.samples == [] and monitor.summary() == {}
