"""Normalisation layers for sparse voxels."""

from __future__ import annotations

import torch
from torch import nn

from pipelines.synchuman.sparse.tensor import SparseVoxels


class SparseGroupNorm32(nn.GroupNorm):
    """GroupNorm over all cells of each sample, computed in float32."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:  # type: ignore[override]
        out = torch.empty_like(x.feats)
        for rows in x.batch_slices():
            feats = x.feats[rows].float()
            # (n, C) -> (1, C, n): one sample, channels first
            normed = super().forward(feats.t().unsqueeze(0))
            out[rows] = normed.squeeze(0).t().to(x.dtype)
        return x.replace(out)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32, returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.float()).to(x.dtype)
