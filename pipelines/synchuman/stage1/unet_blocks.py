"""Down, middle and up blocks of the multiview UNet (SD-2.1 shape, multiview transformers).

ResNet blocks and the resamplers are diffusers' own (``ResnetBlock2D``,
``Downsample2D``, ``Upsample2D``), as are the attention-free ``DownBlock2D`` /
``UpBlock2D``: the official network uses exactly those.  The cross-attention
blocks interleave ResNets with :class:`MultiviewTransformer2D`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UpBlock2D
from torch import nn

from pipelines.synchuman.stage1.multiview_transformer import MultiviewTransformer2D


@dataclass(frozen=True)
class BlockSettings:
    """What every block of one UNet shares."""

    temb_channels: int
    groups: int
    eps: float
    cross_attention_dim: int
    num_views: int


def _resnet(settings: BlockSettings, in_channels: int, out_channels: int) -> ResnetBlock2D:
    return ResnetBlock2D(
        in_channels=in_channels,
        out_channels=out_channels,
        temb_channels=settings.temb_channels,
        eps=settings.eps,
        groups=settings.groups,
        non_linearity="silu",
    )


def _transformer(settings: BlockSettings, channels: int, heads: int) -> MultiviewTransformer2D:
    return MultiviewTransformer2D(
        channels, heads, settings.cross_attention_dim, settings.num_views, settings.groups
    )


class CrossAttnDownBlockMV2D(nn.Module):
    """``num_layers`` x (ResNet, multiview transformer), then an optional stride-2 conv."""

    has_cross_attention = True

    def __init__(
        self,
        settings: BlockSettings,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        heads: int,
        add_downsample: bool,
        downsample_padding: int = 1,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            _resnet(settings, in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(_transformer(settings, out_channels, heads) for _ in range(num_layers))
        self.downsamplers = (
            nn.ModuleList(
                [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op")]
            )
            if add_downsample
            else None
        )

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips: tuple[torch.Tensor, ...] = ()
        for resnet, attention in zip(self.resnets, self.attentions):
            x = attention(resnet(x, temb), text)
            skips += (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips += (x,)
        return x, skips


class UNetMidBlockMV2DCrossAttn(nn.Module):
    """ResNet, multiview transformer, ResNet at the lowest resolution."""

    has_cross_attention = True

    def __init__(self, settings: BlockSettings, channels: int, heads: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(settings, channels, channels), _resnet(settings, channels, channels)])
        self.attentions = nn.ModuleList([_transformer(settings, channels, heads)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, text), temb)


class CrossAttnUpBlockMV2D(nn.Module):
    """``num_layers`` x (concat skip, ResNet, multiview transformer), then an optional upsampler."""

    has_cross_attention = True

    def __init__(
        self,
        settings: BlockSettings,
        in_channels: int,
        prev_output_channel: int,
        out_channels: int,
        num_layers: int,
        heads: int,
        add_upsample: bool,
    ) -> None:
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(_resnet(settings, resnet_in + skip_channels, out_channels))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(_transformer(settings, out_channels, heads) for _ in range(num_layers))
        self.upsamplers = (
            nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]) if add_upsample else None
        )

    def forward(
        self,
        x: torch.Tensor,
        skips: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        text: torch.Tensor,
    ) -> torch.Tensor:
        for resnet, attention in zip(self.resnets, self.attentions):
            skip, skips = skips[-1], skips[:-1]
            x = torch.cat([x, skip], dim=1)  # [n, C + C_skip, h, w]
            x = attention(resnet(x, temb), text)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


def make_down_block(
    kind: str, settings: BlockSettings, in_channels: int, out_channels: int, num_layers: int, heads: int,
    add_downsample: bool, downsample_padding: int,
) -> nn.Module:
    if kind == "CrossAttnDownBlockMV2D":
        return CrossAttnDownBlockMV2D(
            settings, in_channels, out_channels, num_layers, heads, add_downsample, downsample_padding
        )
    if kind == "DownBlock2D":
        return DownBlock2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=settings.temb_channels,
            num_layers=num_layers, resnet_eps=settings.eps, resnet_act_fn="silu",
            resnet_groups=settings.groups, add_downsample=add_downsample, downsample_padding=downsample_padding,
        )
    raise ValueError(f"unsupported down block type {kind!r}")


def make_up_block(
    kind: str, settings: BlockSettings, in_channels: int, prev_output_channel: int, out_channels: int,
    num_layers: int, heads: int, add_upsample: bool,
) -> nn.Module:
    if kind == "CrossAttnUpBlockMV2D":
        return CrossAttnUpBlockMV2D(
            settings, in_channels, prev_output_channel, out_channels, num_layers, heads, add_upsample
        )
    if kind == "UpBlock2D":
        return UpBlock2D(
            in_channels=in_channels, prev_output_channel=prev_output_channel, out_channels=out_channels,
            temb_channels=settings.temb_channels, num_layers=num_layers, resnet_eps=settings.eps,
            resnet_act_fn="silu", resnet_groups=settings.groups, add_upsample=add_upsample,
        )
    raise ValueError(f"unsupported up block type {kind!r}")
