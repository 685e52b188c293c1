"""The structured-latent (SLAT) flow transformer (TRELLIS ``SLatFlowModel``).

It predicts the flow velocity of 8-channel latents living on the occupied cells
of the 64^3 grid, conditioned on the flow time and on DINOv2 image tokens:

    input_layer 8 -> io                 (64^3 cells)
    input_blocks: res blocks, the last one pools to 32^3 and widens to model channels
    + absolute position embedding of the 32^3 coordinates
    blocks: adaLN-modulated transformer blocks (full self-attention, cross-attention)
    out_blocks: res blocks on [h, skip], the first one unpools back to 64^3
    layer norm -> out_layer io -> 8
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.sparse.conv import SparseConv3d
from pipelines.synchuman.sparse.norm import LayerNorm32
from pipelines.synchuman.sparse.resample import downsample, upsample
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.blocks import (
    SparseCrossAttention,
    SparseSelfAttention,
    TimestepEmbedder,
    convert_linear_and_conv,
    position_embedding,
)
from pipelines.synchuman.trellis_layers import TrellisFeedForward


@dataclass(frozen=True)
class SLatFlowConfig:
    """``config.json`` ``args`` of ``SLatFlowModel`` (unknown keys are ignored)."""

    resolution: int = 64
    in_channels: int = 8
    model_channels: int = 1024
    cond_channels: int = 1024
    out_channels: int = 8
    num_blocks: int = 24
    num_heads: int | None = 16
    num_head_channels: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 2
    num_io_res_blocks: int = 2
    io_block_channels: list[int] = field(default_factory=lambda: [128])
    pe_mode: str = "ape"
    use_fp16: bool = True
    use_skip_connection: bool = True
    share_mod: bool = False
    qk_rms_norm: bool = True
    qk_rms_norm_cross: bool = False

    @classmethod
    def from_args(cls, args: dict) -> SLatFlowConfig:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        config = cls(**known)
        if config.pe_mode != "ape" or config.share_mod or config.qk_rms_norm_cross:
            raise ValueError("only pe_mode 'ape', share_mod false and no cross qk norm are supported")
        if len(config.io_block_channels) != 1 or config.patch_size != 2:
            raise ValueError("only one 2x pooling stage (patch_size 2) is supported")
        return config

    @property
    def heads(self) -> int:
        return self.num_heads or self.model_channels // self.num_head_channels


class SparseResBlock3d(nn.Module):
    """[pool | unpool] -> LN -> SiLU -> conv -> LN * (1 + scale) + shift -> SiLU -> conv, + skip."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, resample: str | None = None) -> None:
        super().__init__()
        self.resample = resample
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.skip_connection = nn.Linear(channels, out_channels) if channels != out_channels else nn.Identity()

    def forward(self, x: SparseVoxels, emb: torch.Tensor) -> SparseVoxels:
        scale, shift = self.emb_layers(emb).to(x.dtype).chunk(2, dim=1)  # (B, C) each
        if self.resample == "down":
            x = downsample(x, 2)
        elif self.resample == "up":
            x = upsample(x, 2)
        batch = x.coords[:, 0].long()
        h = x.replace(F.silu(self.norm1(x.feats)))
        h = self.conv1(h)
        h = h.replace(F.silu(self.norm2(h.feats) * (1 + scale[batch]) + shift[batch]))
        h = self.conv2(h)
        return h.replace(h.feats + self.skip_connection(x.feats))


class ModulatedCrossBlock(nn.Module):
    """adaLN self-attention, cross-attention to the image tokens, adaLN MLP."""

    def __init__(self, channels: int, context_channels: int, num_heads: int, mlp_ratio: float, qk_rms_norm: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SparseSelfAttention(channels, num_heads, qk_rms_norm=qk_rms_norm)
        self.cross_attn = SparseCrossAttention(channels, context_channels, num_heads)
        self.mlp = TrellisFeedForward(channels, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def forward(self, x: SparseVoxels, emb: torch.Tensor, context: torch.Tensor) -> SparseVoxels:
        batch = x.coords[:, 0].long()
        mod = self.adaLN_modulation(emb)[batch]  # (N, 6C)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        feats = x.feats
        h = self.norm1(feats) * (1 + scale_msa) + shift_msa
        feats = feats + self.self_attn(x.replace(h)) * gate_msa
        feats = feats + self.cross_attn(x.replace(self.norm2(feats)), context)
        h = self.norm3(feats) * (1 + scale_mlp) + shift_mlp
        feats = feats + self.mlp(h) * gate_mlp
        return x.replace(feats)


class SLatFlowModel(nn.Module):
    """Velocity of the structured latent: ``forward(x, t, cond) -> SparseVoxels``."""

    def __init__(self, config: SLatFlowConfig) -> None:
        super().__init__()
        self.config = config
        c, io = config.model_channels, config.io_block_channels[0]
        self.t_embedder = TimestepEmbedder(c)
        self.input_layer = nn.Linear(config.in_channels, io)
        self.input_blocks = nn.ModuleList(
            [SparseResBlock3d(io, c, io) for _ in range(config.num_io_res_blocks - 1)]
            + [SparseResBlock3d(io, c, c, resample="down")]
        )
        self.blocks = nn.ModuleList(
            [
                ModulatedCrossBlock(c, config.cond_channels, config.heads, config.mlp_ratio, config.qk_rms_norm)
                for _ in range(config.num_blocks)
            ]
        )
        skip = 2 if config.use_skip_connection else 1
        self.out_blocks = nn.ModuleList(
            [SparseResBlock3d(c * skip, c, io, resample="up")]
            + [SparseResBlock3d(io * skip, c, io) for _ in range(config.num_io_res_blocks - 1)]
        )
        self.out_layer = nn.Linear(io, config.out_channels)
        self.torso_dtype = torch.float32

    def convert_torso(self, dtype: torch.dtype) -> None:
        """Run the res blocks and transformer blocks in ``dtype`` (as the reference's fp16 mode)."""
        for part in (self.input_blocks, self.blocks, self.out_blocks):
            convert_linear_and_conv(part, dtype)
        self.torso_dtype = dtype

    def forward(self, x: SparseVoxels, t: torch.Tensor, cond: torch.Tensor) -> SparseVoxels:
        """x: (N, 8) latents on 64^3 cells; t: (B,) = 1000 * flow time; cond: (B, M, cond_channels)."""
        dtype = self.torso_dtype
        h = x.replace(self.input_layer(x.feats).to(dtype))
        emb = self.t_embedder(t).to(dtype)  # (B, C)
        cond = cond.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h.feats)
        h = h.replace(h.feats + position_embedding(h.coords[:, 1:], h.feats.shape[1]).to(dtype))
        for block in self.blocks:
            h = block(h, emb, cond)
        for block, skip in zip(self.out_blocks, reversed(skips)):
            if self.config.use_skip_connection:
                h = h.replace(torch.cat([h.feats, skip], dim=1))
            h = block(h, emb)
        out = F.layer_norm(h.feats.float(), h.feats.shape[-1:])
        return x.replace(self.out_layer(out))
