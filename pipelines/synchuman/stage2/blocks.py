"""Building blocks shared by the SLAT flow and the decoders.

Module and parameter names follow the official checkpoints (TRELLIS naming), so
their state dicts load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.sparse.attention import cross_attention, full_self_attention, windowed_self_attention
from pipelines.synchuman.sparse.conv import _KernelWeights
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.trellis_layers import MultiHeadRMSNorm


def position_embedding(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """Absolute sinusoidal embedding of integer ``(N, 3)`` positions -> ``(N, channels)``.

    Each axis gets ``channels // 6`` frequencies ``10000^(-i/f)`` as ``[sin | cos]``;
    the axes are concatenated and the remainder is zero-padded.
    """
    freq_dim = channels // 3 // 2
    freqs = 1.0 / (10000 ** (torch.arange(freq_dim, dtype=torch.float32, device=coords.device) / freq_dim))
    angles = torch.outer(coords.reshape(-1).float(), freqs)  # (N*3, f)
    embed = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(coords.shape[0], -1)  # (N, 6f)
    if embed.shape[1] < channels:
        embed = F.pad(embed, (0, channels - embed.shape[1]))
    return embed


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of the (1000-scaled) flow time, then an MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]  # (B, half)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class SparseSelfAttention(nn.Module):
    """Multi-head self-attention over the cells of each sample (full or windowed)."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        *,
        window_size: int | None = None,
        shift: int = 0,
        qk_rms_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift = shift
        self.qk_rms_norm = qk_rms_norm
        self.to_qkv = nn.Linear(channels, channels * 3)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(channels // num_heads, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(channels // num_heads, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: SparseVoxels) -> torch.Tensor:
        n = x.feats.shape[0]
        qkv = self.to_qkv(x.feats).reshape(n, 3, self.num_heads, -1)  # (N, 3, H, C)
        q, k, v = qkv.unbind(dim=1)  # (N, H, C) each
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        if self.window_size is None:
            out = full_self_attention(x, q, k, v)
        else:
            out = windowed_self_attention(x, q, k, v, self.window_size, self.shift)
        return self.to_out(out.reshape(n, -1))  # (N, H*C)


class SparseCrossAttention(nn.Module):
    """Multi-head attention from each sample's cells to its context tokens."""

    def __init__(self, channels: int, context_channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_channels, channels * 2)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: SparseVoxels, context: torch.Tensor) -> torch.Tensor:
        n = x.feats.shape[0]
        q = self.to_q(x.feats).reshape(n, self.num_heads, -1)  # (N, H, C)
        b, m, _ = context.shape
        kv = self.to_kv(context).reshape(b, m, 2, self.num_heads, -1)  # (B, M, 2, H, C)
        out = cross_attention(x, q, kv[:, :, 0], kv[:, :, 1])
        return self.to_out(out.reshape(n, -1))


def convert_linear_and_conv(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast the weights of linears and sparse convs below ``module`` (norms stay float32)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, _KernelWeights)):
            sub.to(dtype)
