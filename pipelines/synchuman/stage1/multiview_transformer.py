"""The multiview transformer layer of the 2D UNet (official ``TransformerMV2DModel``, "self_rowwise").

The 2D branch always carries one batch of ``2 domains x 2 CFG halves x V views``
in the order ``[normal_uncond x V, normal_cond x V, colour_uncond x V, colour_cond x V]``
(V = 5: front, right, back, left, face).  Each transformer block mixes
information in four steps, each a pre-norm residual:

1. **Joint domain self-attention** (``attn1``): for every (CFG half, view) the
   normal tokens and the colour tokens of that view form one sequence
   ``[normal (h*w), colour (h*w)]``.  Afterwards the face view's output is
   resized to ``(h//3)^2`` and averaged 0.5/0.5 into the front view's
   top-centre region, in both domains (the face -> front blend).
2. **Row-wise multiview attention** (``attn_mv``): image row r of the 4 body
   views attends across those views (``4*w`` tokens); the face view is untouched.
3. **Text cross-attention** (``attn2``) to the fixed prompt embeddings.
4. **GEGLU feed-forward**.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.stage1.layers import Attention, FeedForward, memory_format_of, multi_head_attention


def blend_face_into_front(x: torch.Tensor, num_views: int, size: int) -> torch.Tensor:
    """Average the resized face view (last) into the front view's (first) top-centre box.

    ``x``: [(b*V), size*size, C] tokens of one domain.  The box is rows
    ``[0, size//3)`` and columns ``[size//3, size - size//3)``.
    """
    bv, _, c = x.shape
    third = size // 3
    grid = x.view(bv // num_views, num_views, size, size, c)  # [b, V, h, w, C]
    face = grid[:, -1].permute(0, 3, 1, 2)  # [b, C, h, w]
    face = F.interpolate(face, size=(third, third), mode="bilinear", align_corners=False)
    face = face.permute(0, 2, 3, 1)  # [b, h/3, h/3, C]
    grid = grid.clone()
    region = grid[:, 0, :third, third : size - third]
    grid[:, 0, :third, third : size - third] = 0.5 * region + 0.5 * face
    return grid.view(bv, size * size, c)


class JointDomainAttention(Attention):
    """Self-attention over each view's normal and colour tokens together, then the face blend."""

    def __init__(self, dim: int, heads: int, dim_head: int, num_views: int) -> None:
        super().__init__(dim, heads, dim_head)
        self.num_views = num_views

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:  # type: ignore[override]
        n, length, _ = x.shape  # n = 2 domains * (CFG halves * V)
        normal, colour = x.chunk(2, dim=0)  # each [n/2, L, C]
        paired = torch.cat([normal, colour], dim=1)  # [n/2, 2L, C]: one sequence per (half, view)
        q, k, v = self.to_q(paired), self.to_k(paired), self.to_v(paired)
        out = self.to_out[0](multi_head_attention(q, k, v, self.heads))  # [n/2, 2L, C]
        normal, colour = out[:, :length], out[:, length:]
        normal = blend_face_into_front(normal, self.num_views, size)
        colour = blend_face_into_front(colour, self.num_views, size)
        return torch.cat([normal, colour], dim=0)  # [n, L, C]


class RowwiseMultiviewAttention(Attention):
    """Each image row attends across the same row of all body views: sequences of ``views*w`` tokens."""

    def forward(self, x: torch.Tensor, views: int, size: int) -> torch.Tensor:  # type: ignore[override]
        bv, _, _ = x.shape
        b = bv // views

        c = x.shape[-1]
        rows = x.view(b, views, size, size, c).transpose(1, 2)  # [b, h, V, w, C]
        rows = rows.reshape(b * size, views * size, c)  # [(b h), (V w), C]: one sequence per image row
        q, k, v = self.to_q(rows), self.to_k(rows), self.to_v(rows)
        out = self.to_out[0](multi_head_attention(q, k, v, self.heads))  # [(b h), (V w), C]
        out = out.view(b, size, views, size, c).transpose(1, 2)  # [b, V, h, w, C]
        return out.reshape(bv, size * size, c)


class MultiviewTransformerBlock(nn.Module):
    """One ``BasicMVTransformerBlock``: joint attention, row-wise attention, text attention, FFN."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int, num_views: int) -> None:
        super().__init__()
        dim_head = dim // heads
        self.num_views = num_views
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = JointDomainAttention(dim, heads, dim_head, num_views)
        self.norm_mv = nn.LayerNorm(dim)
        self.attn_mv = RowwiseMultiviewAttention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, text: torch.Tensor, size: int) -> torch.Tensor:
        n, length, c = x.shape  # [n = groups*V, h*w, C]
        x = x + self.attn1(self.norm1(x), size)
        views = x.view(n // self.num_views, self.num_views, length, c)  # [groups, V, L, C]
        body = views[:, :-1].reshape(-1, length, c)  # [(groups (V-1)), L, C]
        body = body + self.attn_mv(self.norm_mv(body), self.num_views - 1, size)
        body = body.view(n // self.num_views, self.num_views - 1, length, c)
        x = torch.cat([body, views[:, -1:]], dim=1).view(n, length, c)
        x = x + self.attn2(self.norm2(x), text)
        return x + self.ff(self.norm3(x))


class MultiviewTransformer2D(nn.Module):
    """GroupNorm -> Linear in -> one multiview block -> Linear out -> + input, on [n, C, h, w] maps."""

    def __init__(self, channels: int, heads: int, cross_attention_dim: int, num_views: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [MultiviewTransformerBlock(channels, heads, cross_attention_dim, num_views)]
        )
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h != w:
            raise ValueError(f"multiview attention needs square feature maps, got {h}x{w}")
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)  # [n, h*w, C]
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, text, h)
        tokens = self.proj_out(tokens)
        out = tokens.view(n, h, w, c).permute(0, 3, 1, 2)  # [n, C, h, w], stored channels-last
        return out.contiguous(memory_format=memory_format_of(x)) + x
