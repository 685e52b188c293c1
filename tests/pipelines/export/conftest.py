"""Export tests run torch on one thread: on small CI machines the few-thousand-element
tensors of these tests are much faster without OpenMP hand-offs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
