"""The 2D <-> 3D synchronisation blocks that tie the multiview UNet to the structure transformer.

Coordinates: the structure grid is indexed (x, y, z) with z up; image rows run
downwards, so grid level z of an R-grid is image row ``R - 1 - z``.  Views 0
(front) and 2 (back) see the x axis across their columns, views 1 (right) and
3 (left) the y axis; the back and left views are generated mirrored, so all
four use +x / +y as their column direction.  These maps are what the released
weights were trained with.

* :class:`ImageToVoxelSync` (official ``DualCrossAttentionSS``): every voxel
  attends to the 4 pixels it projects to in the body normal maps (pooled to
  R x R), order ``[view0 (row, x), view2 (row, x), view1 (row, y), view3 (row, y)]``.
* :class:`VoxelToImageSync` (official ``DualCrossAttentionMV``): every body
  pixel (row i, col j) of the pooled P^3 grid's size attends to the P voxels
  on its line of sight: ``x=j, all y, z=P-1-i`` for views 0/2 and
  ``all x, y=j, z=P-1-i`` for views 1/3.  The face view gets a zero update.

Both rely on the batch layouts ``[normal_u, normal_c, colour_u, colour_c] x V``
(2D) and ``[uncond, cond]`` (3D): 2D CFG half b pairs with 3D batch item b.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.synchuman.stage1.layers import Attention, FeedForward, LayerNorm32, memory_format_of


class _DownsampleConv(nn.Module):
    """GroupNorm(32) -> 3^d conv -> GELU -> adaptive average pool (key ``conv.{0,1}``)."""

    def __init__(self, channels: int, pooled: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv = nn.Sequential(nn.GroupNorm(32, channels), conv(channels, channels, 3, padding=1), nn.GELU())
        self.pooled = pooled
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        pool = F.adaptive_avg_pool3d if self.dims == 3 else F.adaptive_avg_pool2d
        return pool(x, self.pooled)


class ImageToVoxelSync(nn.Module):
    """Structure tokens [B, R^3, S] gather features from the body normal maps; returns updated tokens."""

    def __init__(self, mv_dim: int, structure_dim: int, heads: int, dim_head: int, resolution: int, num_views: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.num_views = num_views
        self.normStructure1 = LayerNorm32(structure_dim, elementwise_affine=True, eps=1e-6)
        self.normStructure2 = LayerNorm32(structure_dim, elementwise_affine=True, eps=1e-6)
        self.imagedownsample = _DownsampleConv(mv_dim, resolution, dims=2)
        self.input_layer_mv = nn.Linear(mv_dim, mv_dim)
        self.input_layer_stucture = nn.Linear(structure_dim, structure_dim)
        self.output_layer_stucture = nn.Linear(structure_dim, structure_dim)
        self.ffn_stucture = FeedForward(structure_dim)
        self.cross_attn_MV_to_Structure = Attention(structure_dim, heads, dim_head, context_dim=mv_dim)

    def forward(self, mv: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        b = structure.shape[0]
        normal = mv[: mv.shape[0] // 2]  # [B*V, C, h, w]: only the normal half is read (per-image ops)
        normal = self.input_layer_mv(normal.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        normal = self.imagedownsample(normal)  # [B*V, C, R, R]
        normal = normal.view(b, self.num_views, *normal.shape[1:])  # [B, V, C, R, R]
        # image row of level z is R-1-z: flipping the rows indexes them by z; build [B, x, y, z, 4 pixels, C]
        front_back = torch.stack([normal[:, 0], normal[:, 2]], dim=1).flip(3)  # [B, 2, C, z, col=x]
        right_left = torch.stack([normal[:, 1], normal[:, 3]], dim=1).flip(3)  # [B, 2, C, z, col=y]
        front_back = front_back.permute(0, 4, 3, 1, 2)[:, :, None]  # [B, x, 1, z, 2, C]
        right_left = right_left.permute(0, 4, 3, 1, 2)[:, None]  # [B, 1, y, z, 2, C]
        c = normal.shape[2]
        kv = torch.cat(
            [front_back.expand(b, r, r, r, 2, c), right_left.expand(b, r, r, r, 2, c)], dim=4
        )  # [B, x, y, z, 4, C] in order view0, view2, view1, view3
        kv = kv.reshape(b * r**3, 4, c)

        tokens = self.input_layer_stucture(structure).reshape(b * r**3, 1, -1)  # [B*R^3, 1, S]
        tokens = tokens + self.cross_attn_MV_to_Structure(self.normStructure1(tokens), kv)
        tokens = tokens + self.ffn_stucture(self.normStructure2(tokens))
        tokens = self.output_layer_stucture(tokens).view(b, r**3, -1)
        return tokens + structure


class VoxelToImageSync(nn.Module):
    """Body pixels of the multiview maps [n, C, P, P] gather voxels along their line of sight."""

    def __init__(
        self, mv_dim: int, structure_dim: int, heads: int, dim_head: int, resolution: int, pooled: int, num_views: int
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.num_views = num_views
        self.voxeldownsample = _DownsampleConv(structure_dim, pooled, dims=3)
        self.input_layer_mv = nn.Linear(mv_dim, mv_dim)
        self.input_layer_stucture = nn.Linear(structure_dim, structure_dim)
        self.output_layer_no = nn.Linear(mv_dim, mv_dim)
        self.output_layer_clr = nn.Linear(mv_dim, mv_dim)
        self.ffn_no = FeedForward(mv_dim)
        self.ffn_clr = FeedForward(mv_dim)
        self.cross_attn_Structure_to_color = Attention(mv_dim, heads, dim_head, context_dim=structure_dim)
        self.cross_attn_Structure_to_normal = Attention(mv_dim, heads, dim_head, context_dim=structure_dim)

    def _branch(self, queries: torch.Tensor, kv: torch.Tensor, attention: Attention, ffn: FeedForward, out: nn.Linear) -> torch.Tensor:
        """queries [N, 1, C] -> out(FFN(attn)) with no-affine LayerNorms (eps 1e-6, float32)."""
        norm = lambda t: F.layer_norm(t.float(), t.shape[-1:], eps=1e-6).to(t.dtype)  # noqa: E731
        queries = queries + attention(norm(queries), kv)
        queries = queries + ffn(norm(queries))
        return out(queries)

    def forward(self, mv: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        n, c, p, _ = mv.shape
        b = structure.shape[0]
        r = self.resolution
        body = self.num_views - 1
        features = self.input_layer_mv(mv.permute(0, 2, 3, 1))  # [n, P, P, C]
        normal, colour = features.chunk(2, dim=0)  # each [B*V, P, P, C]

        grid = self.input_layer_stucture(structure)  # [B, R^3, S]
        grid = grid.transpose(1, 2).reshape(b, -1, r, r, r)  # [B, S, x, y, z]
        grid = self.voxeldownsample(grid)  # [B, S, P, P, P]
        grid = grid.flip(-1).permute(0, 4, 1, 2, 3)  # [B, row=P-1-z, S, x, y]
        along_y = grid.permute(0, 1, 3, 4, 2)  # [B, row, col=x, y, S]: views 0 and 2
        along_x = grid.permute(0, 1, 4, 3, 2)  # [B, row, col=y, x, S]: views 1 and 3
        kv = torch.stack([along_y, along_x, along_y, along_x], dim=1)  # [B, 4, row, col, P, S]
        kv = kv.reshape(b * body * p * p, p, -1)

        def queries(t: torch.Tensor) -> torch.Tensor:
            t = t.view(b, self.num_views, p, p, c)[:, :body]  # [B, 4, P, P, C]
            return t.reshape(b * body * p * p, 1, c)

        def to_maps(t: torch.Tensor) -> torch.Tensor:
            t = t.view(b, body, p, p, c)
            t = torch.cat([t, t.new_zeros(b, 1, p, p, c)], dim=1)  # the face view gets no update
            return t.reshape(b * self.num_views, p, p, c)

        normal = to_maps(
            self._branch(queries(normal), kv, self.cross_attn_Structure_to_normal, self.ffn_no, self.output_layer_no)
        )
        colour = to_maps(
            self._branch(queries(colour), kv, self.cross_attn_Structure_to_color, self.ffn_clr, self.output_layer_clr)
        )
        update = torch.cat([normal, colour], dim=0).permute(0, 3, 1, 2)  # [n, C, P, P]
        return mv + update.contiguous(memory_format=memory_format_of(mv))
