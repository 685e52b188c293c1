"""Comparison of a baked texture with the synthetic subject's known colours."""

from __future__ import annotations

import numpy as np
import torch

from tests.pipelines.export.scene import color_field
from pipelines.export.raster import rasterize_uv

CANONICAL_DIRECTIONS = torch.tensor([[0, -1, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0]], dtype=torch.float32)
"""Directions from the subject towards the four side cameras."""


def visible_texel_psnr(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray) -> float:
    """PSNR (dB) of ``texture`` (S, S, 3) uint8 against ``color_field`` over the texels whose
    face looks towards one of the four side cameras (cos > 0.3; the subject is convex)."""
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int64)
    raster = rasterize_uv(f, torch.as_tensor(uvs, dtype=torch.float32), texture.shape[0])
    corners = v[f]  # (F, 3, 3)
    normals = torch.nn.functional.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1)
    facing = ((normals @ CANONICAL_DIRECTIONS.T) > 0.3).any(dim=1)  # (F,)
    visible = raster.mask & facing[raster.face_id.clamp(min=0)]
    expected = color_field(raster.interpolate(v, f))[visible].numpy()
    got = texture[visible.numpy()].astype(np.float32) / 255.0
    assert len(got) > 0.3 * texture.shape[0] ** 2 * 0.5, "too few visible texels to judge"
    mse = float(((expected - got) ** 2).mean())
    return 10.0 * np.log10(1.0 / mse)
