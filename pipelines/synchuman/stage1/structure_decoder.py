"""TRELLIS's sparse-structure decoder: 8 x 16^3 latent -> 1 x 64^3 occupancy logits.

Conv3d in, middle ResBlocks, then per stage ResBlocks followed (except after
the last stage) by an upsampler (Conv3d to 8x channels + 3D pixel shuffle x2),
and a norm -> SiLU -> Conv3d head.  Occupied cells are ``logits > 0``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from pipelines.synchuman.stage1.layers import ChannelLayerNorm32, GroupNorm32


@dataclass(frozen=True)
class StructureDecoderConfig:
    """``config.json["args"]``; defaults are TRELLIS ``ss_dec_conv3d_16l8``."""

    out_channels: int = 1
    latent_channels: int = 8
    num_res_blocks: int = 2
    channels: tuple[int, ...] = (512, 128, 32)
    num_res_blocks_middle: int = 2
    norm_type: str = "layer"


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "layer":
        return ChannelLayerNorm32(channels)
    if kind == "group":
        return GroupNorm32(32, channels)
    raise ValueError(f"unknown norm type {kind!r}")


def pixel_shuffle_3d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, C*f^3, H, W, D] -> [B, C, H*f, W*f, D*f]; channel c*f^3 + i*f^2 + j*f + k -> offset (i, j, k)."""
    b, c, h, w, d = x.shape
    c_out = c // factor**3
    x = x.view(b, c_out, factor, factor, factor, h, w, d)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # [B, C, H, f, W, f, D, f]
    return x.reshape(b, c_out, h * factor, w * factor, d * factor)


class ResBlock3d(nn.Module):
    def __init__(self, channels: int, norm_type: str) -> None:
        super().__init__()
        self.norm1 = _norm(norm_type, channels)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = _norm(norm_type, channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + x


class UpsampleBlock3d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x), 2)


class StructureDecoder(nn.Module):
    def __init__(self, config: StructureDecoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.input_layer = nn.Conv3d(c.latent_channels, c.channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(
            *[ResBlock3d(c.channels[0], c.norm_type) for _ in range(c.num_res_blocks_middle)]
        )
        blocks: list[nn.Module] = []
        for i, ch in enumerate(c.channels):
            blocks.extend(ResBlock3d(ch, c.norm_type) for _ in range(c.num_res_blocks))
            if i < len(c.channels) - 1:
                blocks.append(UpsampleBlock3d(ch, c.channels[i + 1]))
        self.blocks = nn.ModuleList(blocks)
        self.out_layer = nn.Sequential(
            _norm(c.norm_type, c.channels[-1]), nn.SiLU(), nn.Conv3d(c.channels[-1], c.out_channels, 3, padding=1)
        )

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> StructureDecoder:
        """Load ``sparse_structure_decoder/`` (``config.json`` + ``model.safetensors``, strict)."""
        folder = Path(folder)
        args = json.loads((folder / "config.json").read_text())["args"]
        known = StructureDecoderConfig.__dataclass_fields__
        config = StructureDecoderConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in known}
        )
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(load_file(folder / "model.safetensors"), strict=True, assign=True)
        return model.to(device=device, dtype=dtype).eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, 8, 16, 16, 16] -> logits [B, 1, 64, 64, 64] (float32)."""
        h = self.input_layer(z.to(self.input_layer.weight.dtype))
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h).float()


def occupied_coords(logits: torch.Tensor) -> torch.Tensor:
    """Rows ``[batch, x, y, z]`` (int32, row-major order) of the cells with ``logits > 0``."""
    return torch.argwhere(logits > 0)[:, [0, 2, 3, 4]].to(torch.int32)
