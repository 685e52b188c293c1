"""DINOv2 ViT-L/14 with 4 register tokens: the image encoder both SyncHuman stages condition on.

The weights come from a local file in the ``torch.hub`` state-dict format of
``facebookresearch/dinov2`` (``dinov2_vitl14_reg4_pretrain.pth``: keys
``cls_token``, ``pos_embed``, ``register_tokens``, ``mask_token``,
``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*``,
``norm.*``).  Nothing is downloaded.

Two uses, one network:

* stage 1 (TRELLIS conditioning, :meth:`DinoV2.trellis_condition`): a 518x518
  image -> the 1 + 4 + 37*37 = 1374 tokens *before* the final norm
  (``x_prenorm``), then a LayerNorm without affine parameters (eps 1e-5):
  ``cond`` [B, 1374, D].
* stage 2 (multiview features, :meth:`DinoV2.intermediate_layers`): an image
  of any multiple of 14 (896 in SyncHuman) -> the outputs of blocks
  [4, 11, 17, 23], each through the final *affine* norm, class and register
  tokens dropped: 4 x [B, (H/14)*(W/14), D].  The 37x37 positional embedding is
  resized with antialiased bicubic interpolation, as the hub model does.

Sizes are read from the state dict (width, depth, registers, grid); the head
count comes from ``dinov2_config.json`` beside the weights when present,
otherwise from the hub's ViT rule of 64 channels per head.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STAGE2_LAYERS = (4, 11, 17, 23)
"""Blocks whose outputs stage 2 concatenates into its multiview features."""


@dataclass(frozen=True)
class DinoV2Config:
    """Constructor arguments; defaults are the hub's ``dinov2_vitl14_reg``."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    layer_norm_eps: float = 1e-6

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution: [B, 3, H, W] -> [B, (H/p)*(W/p), D]."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, D, H/p, W/p]
        return x.flatten(2).transpose(1, 2)  # [B, N, D]


class SelfAttention(nn.Module):
    """Multi-head softmax attention with a fused qkv projection (scale head_dim^-0.5)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(b, n, d)  # [B, N, D]
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, config: DinoV2Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = SelfAttention(dim, config.num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2(nn.Module):
    """DINOv2 vision transformer with register tokens (hub key layout, ``block_chunks=0``)."""

    def __init__(self, config: DinoV2Config = DinoV2Config()) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid_size**2, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept for strict loading
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        num_heads: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> DinoV2:
        """Build from a hub-format ``.pth`` state dict (strict); sizes come from its tensors.

        ``num_heads``: taken from this argument, else from ``dinov2_config.json``
        beside the file, else ``embed_dim // 64`` (the hub's ViT-S/B/L/g rule).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"DINOv2 weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        config = config_from_state_dict(state, num_heads=num_heads or _heads_from_json(path))
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device=device, dtype=dtype).eval()

    # -- tokens --------------------------------------------------------------------------------

    def interpolate_pos_encoding(self, num_patches_h: int, num_patches_w: int) -> torch.Tensor:
        """Positional embedding for a (h, w) patch grid: [1, 1 + h*w, D] (float32).

        The stored grid is resized with bicubic interpolation (antialiased when the
        config says so) only when the grid differs from the stored one.
        """
        pos = self.pos_embed.float()
        side = self.config.grid_size
        if num_patches_h == side and num_patches_w == side:
            return pos
        dim = pos.shape[-1]
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, side, side]
        offset = self.config.interpolate_offset
        if offset:
            scale = ((num_patches_h + offset) / side, (num_patches_w + offset) / side)
            resize = {"scale_factor": scale}
        else:
            resize = {"size": (num_patches_h, num_patches_w)}
        patch_pos = F.interpolate(
            patch_pos, mode="bicubic", antialias=self.config.interpolate_antialias, **resize
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)  # [1, h*w, D]
        return torch.cat([cls_pos, patch_pos], dim=1)

    def prepare_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised images -> [B, 1 + R + (H/p)*(W/p), D] tokens (cls, registers, patches)."""
        b, _, h, w = images.shape
        p = self.config.patch_size
        x = self.patch_embed(images)  # [B, N, D]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # [B, 1 + N, D]
        x = x + self.interpolate_pos_encoding(h // p, w // p).to(x.dtype)
        registers = self.register_tokens.expand(b, -1, -1)
        return torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)  # [B, 1 + R + N, D]

    # -- the two uses --------------------------------------------------------------------------

    def forward_prenorm(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block, before the final norm (DINOv2's ``x_prenorm``)."""
        x = self.prepare_tokens(images)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """DINOv2's ``forward_features``: normed cls / register / patch tokens and ``x_prenorm``."""
        x = self.forward_prenorm(images)
        x_norm = self.norm(x)
        r = self.config.num_register_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1 : 1 + r],
            "x_norm_patchtokens": x_norm[:, 1 + r :],
            "x_prenorm": x,
        }

    def trellis_condition(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-1 conditioning: ImageNet-normalised [B, 3, 518, 518] -> [B, 1374, D].

        ``x_prenorm`` followed by a LayerNorm over channels without affine
        parameters (eps 1e-5), as TRELLIS's ``encode_image`` computes it.
        """
        x = self.forward_prenorm(images)
        return F.layer_norm(x, x.shape[-1:])

    def intermediate_layers(
        self, images: torch.Tensor, layers: Sequence[int] = STAGE2_LAYERS, *, norm: bool = True
    ) -> list[torch.Tensor]:
        """Patch tokens after the given blocks: one [B, (H/p)*(W/p), D] per layer.

        As DINOv2's ``get_intermediate_layers(x, layers)`` with its defaults: each
        output goes through the final (affine) norm, class and register tokens
        are dropped.  Any H, W that are multiples of the patch size work.
        """
        wanted = set(layers)
        if max(wanted) >= len(self.blocks) or min(wanted) < 0:
            raise ValueError(f"layers {sorted(wanted)} out of range for depth {len(self.blocks)}")
        skip = 1 + self.config.num_register_tokens
        x = self.prepare_tokens(images)
        outputs: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in wanted:
                outputs[i] = (self.norm(x) if norm else x)[:, skip:]
            if len(outputs) == len(wanted):
                break
        return [outputs[i] for i in layers]


def normalize_imagenet(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> ImageNet mean/std normalised."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def config_from_state_dict(state: dict[str, torch.Tensor], *, num_heads: int | None = None) -> DinoV2Config:
    """Read width, depth, patch size, register count and grid from hub-format tensors."""
    embed_dim = state["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    patch_size = state["patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    registers = state["register_tokens"].shape[1] if "register_tokens" in state else 0
    return DinoV2Config(
        img_size=grid * patch_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads or max(1, embed_dim // 64),
        mlp_ratio=hidden / embed_dim,
        num_register_tokens=registers,
    )


def _heads_from_json(weights: Path) -> int | None:
    """Head count from a ``dinov2_config.json`` beside the weights (constructor_args.num_heads)."""
    config_path = weights.with_name("dinov2_config.json")
    if not config_path.is_file():
        return None
    data = json.loads(config_path.read_text())
    return data.get("constructor_args", data).get("num_heads")
