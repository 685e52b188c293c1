"""Small building blocks shared by the stage-1 networks.

Every attention here is exact softmax attention with scale ``head_dim ** -0.5``,
computed by :func:`torch.nn.functional.scaled_dot_product_attention` (which picks
a fused flash / memory-efficient kernel on GPUs).  Layers keep the official
parameter names (``to_q``, ``to_out.0``, ``net.0.proj`` ...) so the released
state dicts load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a 4D tensor stored that way, else the default layout."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention over [B, Lq, H*D] x [B, Lk, H*D] -> [B, Lq, H*D]."""
    b, lq, inner = q.shape
    lk = k.shape[1]
    d = inner // heads
    q = q.view(b, lq, heads, d).transpose(1, 2)  # [B, H, Lq, D]
    k = k.view(b, lk, heads, d).transpose(1, 2)  # [B, H, Lk, D]
    v = v.view(b, lk, heads, d).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)  # [B, H, Lq, D]
    return out.transpose(1, 2).reshape(b, lq, inner)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (TRELLIS ``LayerNorm32``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class ChannelLayerNorm32(LayerNorm32):
    """LayerNorm over the channel axis of a [B, C, *spatial] tensor, in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)  # [B, *spatial, C]
        return super().forward(x).movedim(-1, 1)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class GEGLU(nn.Module):
    """Linear to 2*inner, then value * GELU(gate) (erf GELU; first half value, second half gate)."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> mult*dim -> dim`` with diffusers' key layout ``net.{0.proj,2}``."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and an output Linear (``to_out.0``).

    ``forward(x, context)`` is plain attention of ``x`` over ``context`` (self
    attention when ``context`` is None).  Subclasses rearrange tokens between
    the projections and the attention to express the multiview patterns.
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = multi_head_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out[0](out)
