"""SyncHuman's SLAT mesh decoder: FlexiCubes parameters on a 256^3 sparse grid.

The multiview trunk (64^3) is followed by two subdivide blocks (64 -> 128 ->
256, channels C -> C/4 -> C/8) and ``out_layer``, giving per fine voxel 101
channels ``[sdf 8 | deform 8x3 | weights 21 | colour 8x6]`` (8 = cube corners).
:func:`pipelines.synchuman.stage2.mesh_extraction.extract_mesh` turns them into
a triangle mesh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.sparse.conv import SparseConv3d
from pipelines.synchuman.sparse.norm import SparseGroupNorm32
from pipelines.synchuman.sparse.resample import subdivide
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.blocks import convert_linear_and_conv
from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig, MultiviewDecoderTrunk
from pipelines.synchuman.stage2.mesh_extraction import FEATURE_CHANNELS, MeshExtraction, extract_mesh


class SparseSubdivideBlock3d(nn.Module):
    """GN -> SiLU -> subdivide -> conv -> GN -> SiLU -> conv, plus a 1x1x1 conv skip of the subdivided input."""

    def __init__(self, channels: int, out_channels: int, groups: int = 32) -> None:
        super().__init__()
        self.act_layers = nn.Sequential(SparseGroupNorm32(groups, channels))
        self.out_layers = nn.ModuleList(
            [
                SparseConv3d(channels, out_channels, 3),
                SparseGroupNorm32(groups, out_channels),
                nn.SiLU(),
                SparseConv3d(out_channels, out_channels, 3),
            ]
        )
        self.skip_connection = SparseConv3d(channels, out_channels, 1) if out_channels != channels else nn.Identity()

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        h = self.act_layers[0](x)
        h = subdivide(h.replace(F.silu(h.feats)))
        x = subdivide(x)
        x.cache = h.cache  # same cells: share neighbour maps
        conv1, norm, _, conv2 = self.out_layers
        h = norm(conv1(h))
        h = conv2(h.replace(F.silu(h.feats)))
        skip = self.skip_connection(x) if isinstance(self.skip_connection, SparseConv3d) else x
        return h.replace(h.feats + skip.feats)


class SLatMeshDecoder(MultiviewDecoderTrunk):
    """slat + multiview DINOv2 maps -> FlexiCubes features at 256^3 -> mesh."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__(config)
        c = config.model_channels
        self.use_color = bool(config.representation_config.get("use_color", False))
        self.upsample = nn.ModuleList([SparseSubdivideBlock3d(c, c // 4), SparseSubdivideBlock3d(c // 4, c // 8)])
        self.out_layer = nn.Linear(c // 8, FEATURE_CHANNELS if self.use_color else FEATURE_CHANNELS - 48)

    def convert_torso(self, dtype: torch.dtype) -> None:
        super().convert_torso(dtype)
        convert_linear_and_conv(self.upsample, dtype)

    def raw_output(self, x: SparseVoxels, mv_color: torch.Tensor, mv_normal: torch.Tensor) -> SparseVoxels:
        """FlexiCubes features on the 256^3 cells, (64 N, 101), in the reference's cell order."""
        h = self.trunk(x, mv_color, mv_normal)
        for block in self.upsample:
            h = block(h)
        return h.replace(self.out_layer(h.feats.float()))

    def forward(self, x: SparseVoxels, mv_color: torch.Tensor, mv_normal: torch.Tensor) -> MeshExtraction:
        if x.batch_size != 1:
            raise ValueError("the mesh decoder extracts one sample at a time")
        fine = self.raw_output(x, mv_color, mv_normal)
        return extract_mesh(fine.coords[:, 1:], fine.feats, resolution=self.config.resolution * 4, use_color=self.use_color)
