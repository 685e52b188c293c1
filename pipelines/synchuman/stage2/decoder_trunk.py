"""The transformer trunk both SyncHuman SLAT decoders share, with multiview injection.

SyncHuman extends TRELLIS's SLAT decoders: every block, after its windowed
self-attention, adds ``mv_condition([LN(x), f_normal, f_color])``, where
``f_*`` are DINOv2 features of the four body views gathered at the pixel each
voxel projects to (orthographic views over the unit cube, 64x64 feature maps):

    view 0 (front) and view 2 (back, stored mirrored): row 63 - z, column x
    view 1 (right) and view 3 (left, stored mirrored): row 63 - z, column y

The per-pixel ``input_layer_color`` / ``input_layer_normal`` linears reduce the
four concatenated DINOv2 layers (4 * mv_dim) to mv_dim; they are applied after
the gather, which is the same per-pixel arithmetic on fewer pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pipelines.synchuman.sparse.norm import LayerNorm32
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.blocks import SparseSelfAttention, convert_linear_and_conv, position_embedding
from pipelines.synchuman.trellis_layers import TrellisFeedForward


@dataclass(frozen=True)
class DecoderConfig:
    """``config.json`` ``args`` of ``SLatGaussianDecoder`` / ``SLatMeshDecoder``."""

    resolution: int = 64
    model_channels: int = 768
    latent_channels: int = 8
    num_blocks: int = 12
    num_heads: int | None = 12
    num_head_channels: int = 64
    mlp_ratio: float = 4.0
    attn_mode: str = "swin"
    window_size: int = 8
    pe_mode: str = "ape"
    use_fp16: bool = True
    qk_rms_norm: bool = False
    representation_config: dict = field(default_factory=dict)
    mv_dim: int = 1024
    mv_condition_mode: str = "4_view"
    use_multiscale: bool = True
    use_faceinfo: bool = False

    @classmethod
    def from_args(cls, args: dict) -> DecoderConfig:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        config = cls(**known)
        if config.attn_mode != "swin" or config.pe_mode != "ape":
            raise ValueError("the decoders support attn_mode 'swin' with pe_mode 'ape'")
        if config.mv_condition_mode != "4_view" or config.use_faceinfo or not config.use_multiscale:
            raise ValueError("the decoders support mv_condition_mode '4_view', multiscale, no face info")
        return config

    @property
    def heads(self) -> int:
        return self.num_heads or self.model_channels // self.num_head_channels


def gather_view_features(coords: torch.Tensor, maps: torch.Tensor, resolution: int = 64) -> torch.Tensor:
    """Per-voxel features of the four body views.

    coords: (N, 4) ``[batch, x, y, z]``; maps: (B, 4, R, R, C) with R = resolution.
    Returns (N, 4, C): ``[view0[63-z, x], view1[63-z, y], view2[63-z, x], view3[63-z, y]]``.
    """
    b, x, y, z = coords.long().unbind(dim=1)
    row = resolution - 1 - z
    return torch.stack([maps[b, 0, row, x], maps[b, 1, row, y], maps[b, 2, row, x], maps[b, 3, row, y]], dim=1)


class MultiviewBlock(nn.Module):
    """Windowed self-attention, multiview condition, MLP; LayerNorms without affine."""

    def __init__(self, channels: int, num_heads: int, mlp_ratio: float, window: int, shift: int, mv_dim: int, qk_rms_norm: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.attn = SparseSelfAttention(channels, num_heads, window_size=window, shift=shift, qk_rms_norm=qk_rms_norm)
        self.mlp = TrellisFeedForward(channels, mlp_ratio)
        self.mv_condition = nn.Sequential(
            nn.Linear(channels + mv_dim * 8, channels * 4), nn.GELU(approximate="tanh"), nn.Linear(channels * 4, channels)
        )

    def forward(self, x: SparseVoxels, mv_normal: torch.Tensor, mv_color: torch.Tensor) -> SparseVoxels:
        feats = x.feats + self.attn(x.replace(self.norm1(x.feats)))
        feats = feats + self.mv_condition(torch.cat([self.norm3(feats), mv_normal, mv_color], dim=1))
        feats = feats + self.mlp(self.norm2(feats))
        return x.replace(feats)


class MultiviewDecoderTrunk(nn.Module):
    """``input_layer`` + position embedding, then the multiview blocks (swin windows, odd blocks shifted)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.model_channels
        self.input_layer = nn.Linear(config.latent_channels, c)
        self.blocks = nn.ModuleList(
            [
                MultiviewBlock(
                    c,
                    config.heads,
                    config.mlp_ratio,
                    config.window_size,
                    config.window_size // 2 * (i % 2),
                    config.mv_dim,
                    config.qk_rms_norm,
                )
                for i in range(config.num_blocks)
            ]
        )
        self.input_layer_color = nn.Linear(4 * config.mv_dim, config.mv_dim)
        self.input_layer_normal = nn.Linear(4 * config.mv_dim, config.mv_dim)
        self.torso_dtype = torch.float32

    def convert_torso(self, dtype: torch.dtype) -> None:
        convert_linear_and_conv(self.blocks, dtype)
        self.torso_dtype = dtype

    def trunk(self, x: SparseVoxels, mv_color: torch.Tensor, mv_normal: torch.Tensor) -> SparseVoxels:
        """x: (N, 8) slat on 64^3; mv_*: (B, 4, 64, 64, 4*mv_dim) DINOv2 maps -> (N, C) in the torso dtype."""
        r = self.config.resolution
        n = x.num_voxels
        # gather (N, 4 views, 4*mv_dim) -> per-pixel linear (N, 4, mv_dim) -> (N, 4*mv_dim)
        color = self.input_layer_color(gather_view_features(x.coords, mv_color, r)).reshape(n, -1)
        normal = self.input_layer_normal(gather_view_features(x.coords, mv_normal, r)).reshape(n, -1)
        dtype = self.torso_dtype
        h = self.input_layer(x.feats) + position_embedding(x.coords[:, 1:], self.config.model_channels)
        h = x.replace(h.to(dtype))
        color, normal = color.to(dtype), normal.to(dtype)
        for block in self.blocks:
            h = block(h, normal, color)
        return h
