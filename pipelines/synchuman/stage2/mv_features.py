"""Multiview DINOv2 feature maps that both decoders inject per voxel.

The four body views (front, right, back, left; [0, 1] RGB) are resized
bilinearly to 896 x 896, ImageNet-normalised, and passed through DINOv2; the
patch tokens after blocks 4, 11, 17 and 23 (each through DINOv2's final affine
norm) are concatenated on channels and laid out as a 64 x 64 map per view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipelines.synchuman.dinov2 import DinoV2, normalize_imagenet

MV_SIZE = 896
MV_LAYERS = (4, 11, 17, 23)
VIEW_INPUT_SIZE = 768


def views_to_tensor(images: list[Image.Image], size: int = VIEW_INPUT_SIZE) -> torch.Tensor:
    """4 PIL views -> (1, 4, 3, size, size) float32 in [0, 1] (Pillow's default resize when needed)."""
    arrays = []
    for image in images:
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size))
        arrays.append(np.asarray(rgb, dtype=np.float32) / 255.0)
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (4, 3, H, W)
    return stacked.unsqueeze(0)


@torch.no_grad()
def multiview_features(dinov2: DinoV2, views: torch.Tensor, layers: tuple[int, ...] = MV_LAYERS) -> torch.Tensor:
    """views (B, V, 3, H, W) in [0, 1] -> (B, V, 64, 64, len(layers) * D) float32."""
    b, v, c, h, w = views.shape
    weight = dinov2.patch_embed.proj.weight
    images = views.reshape(b * v, c, h, w).to(weight.device, torch.float32)
    images = F.interpolate(images, size=(MV_SIZE, MV_SIZE), mode="bilinear", align_corners=False)
    images = normalize_imagenet(images).to(weight.dtype)
    tokens = torch.cat(dinov2.intermediate_layers(images, layers), dim=-1).float()  # (B*V, P, L*D)
    side = math.isqrt(tokens.shape[1])
    return tokens.reshape(b, v, side, side, tokens.shape[-1])  # (B, V, 64, 64, L*D)
