"""Layers that the TRELLIS-style transformers of both stages share.

The stage-1 structure DiT and the stage-2 SLAT flow and decoders were trained
from the same code base, so their QK RMS-norm and MLP are the same modules with
the same state-dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadRMSNorm(nn.Module):
    """Per-head ``normalize(x) * gamma * sqrt(head_dim)``, computed in float32 (key ``gamma``: [heads, head_dim])."""

    def __init__(self, head_dim: int, heads: int) -> None:
        super().__init__()
        self.scale = head_dim**0.5
        self.gamma = nn.Parameter(torch.ones(heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=-1) * self.gamma.float() * self.scale).to(x.dtype)


class TrellisFeedForward(nn.Module):
    """Linear - GELU(tanh) - Linear (keys ``mlp.0``, ``mlp.2``)."""

    def __init__(self, channels: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)
