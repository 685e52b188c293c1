"""The 3D branch: TRELLIS's sparse-structure flow transformer (``ss_flow_img_dit_L_16l8``).

The 8 x 16^3 structure latent becomes 4096 tokens (patch size 1, x slowest:
token = x*256 + y*16 + z), each block is an adaLN-modulated transformer with
QK-RMS-normed self-attention, plain cross-attention to the DINOv2 tokens and a
tanh-GELU MLP.  In SyncHuman the blocks run in three segments interleaved with
the 2D UNet, so this file holds the parts and :mod:`denoiser` drives them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.stage1.layers import LayerNorm32
from pipelines.synchuman.trellis_layers import MultiHeadRMSNorm, TrellisFeedForward


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """GLIDE timestep embedding [cos, sin] of [N] -> [N, dim] (float32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def absolute_position_embedding(resolution: int, channels: int) -> torch.Tensor:
    """TRELLIS APE of a resolution^3 grid: [x-sin, x-cos, y-sin, y-cos, z-sin, z-cos, 0-pad] -> [R^3, C]."""
    freq_dim = channels // 3 // 2
    freqs = 1.0 / (10000 ** (torch.arange(freq_dim, dtype=torch.float32) / freq_dim))
    axes = torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij")
    coords = torch.stack(axes, dim=-1).reshape(-1, 3).float()  # [R^3, 3], x slowest
    angles = torch.outer(coords.reshape(-1), freqs)  # [R^3 * 3, F]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(coords.shape[0], -1)
    return F.pad(emb, (0, channels - emb.shape[1]))


class TimestepEmbedder(nn.Module):
    """256-frequency sinusoid -> Linear -> SiLU -> Linear (keys ``mlp.0``, ``mlp.2``)."""

    def __init__(self, channels: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, channels), nn.SiLU(), nn.Linear(channels, channels))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        weight = self.mlp[0].weight
        return self.mlp(sinusoidal_embedding(t, self.frequency_dim).to(weight.dtype))


class SelfAttention(nn.Module):
    """Fused-qkv self-attention with QK RMS-norm (keys ``to_qkv``, ``{q,k}_rms_norm``, ``to_out``)."""

    def __init__(self, channels: int, heads: int, qk_rms_norm: bool) -> None:
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(channels, channels * 3)
        self.qk_rms_norm = qk_rms_norm
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(channels // heads, heads)
            self.k_rms_norm = MultiHeadRMSNorm(channels // heads, heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        q, k, v = self.to_qkv(x).view(b, length, 3, self.heads, c // self.heads).unbind(dim=2)  # [B, L, H, D]
        if self.qk_rms_norm:
            q, k = self.q_rms_norm(q), self.k_rms_norm(k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.to_out(out.transpose(1, 2).reshape(b, length, c))  # [B, L, C]


class CrossAttention(nn.Module):
    """Attention of the tokens over a context (keys ``to_q``, ``to_kv``, ``to_out``)."""

    def __init__(self, channels: int, context_channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_channels, channels * 2)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        d = c // self.heads
        q = self.to_q(x).view(b, length, self.heads, d).transpose(1, 2)  # [B, H, L, D]
        k, v = self.to_kv(context).view(b, context.shape[1], 2, self.heads, d).unbind(dim=2)
        out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))
        return self.to_out(out.transpose(1, 2).reshape(b, length, c))


class ModulatedCrossBlock(nn.Module):
    """x += gate * SA(mod(LN1 x)); x += CA(LN2 x, cond); x += gate * MLP(mod(LN3 x)).

    LN1/LN3 have no affine parameters, LN2 has; all eps 1e-6, in float32.
    """

    def __init__(self, channels: int, context_channels: int, heads: int, mlp_ratio: float, qk_rms_norm: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, heads, qk_rms_norm)
        self.cross_attn = CrossAttention(channels, context_channels, heads)
        self.mlp = TrellisFeedForward(channels, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        modulation = self.adaLN_modulation(t_emb).unsqueeze(1)  # [B or 1, 1, 6C]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale_msa) + shift_msa
        x = x + self.self_attn(h) * gate_msa
        x = x + self.cross_attn(self.norm2(x), context)
        h = self.norm3(x) * (1 + scale_mlp) + shift_mlp
        return x + self.mlp(h) * gate_mlp
