"""Submanifold sparse 3D convolution by neighbour gather.

A submanifold convolution evaluates a dense ``Conv3d`` (stride 1, zero padding)
only at the occupied cells and only sums over occupied neighbours.  Weights are
stored as spconv 2.x keeps them, ``[out, kx, ky, kz, in]`` ("KRSC"), with the
kernel axes following the coordinate columns (x, y, z); the official checkpoints
load unchanged into :class:`SparseConv3d` (``<name>.conv.weight``, ``.conv.bias``).
A 1x1x1 kernel follows spconv's own shortcut for that case (see ``forward``).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from pipelines.synchuman.sparse.tensor import SparseVoxels, grid_keys, lookup_rows


def neighbour_map(voxels: SparseVoxels, kernel_size: int) -> torch.Tensor:
    """``(K, N)`` int64: row of the neighbour at each kernel offset, -1 if empty.

    Offsets run over ``(dx, dy, dz)`` in ``itertools.product`` order, which is
    the row-major order of the ``kx, ky, kz`` weight axes.
    """
    key = f"neighbours_{kernel_size}"
    if key in voxels.cache:
        return voxels.cache[key]
    coords = voxels.coords
    half = kernel_size // 2
    extent = int(coords[:, 1:].max().item()) + 1 if coords.shape[0] else 1
    table = grid_keys(coords, extent)
    offsets = torch.tensor(
        list(itertools.product(range(-half, half + 1), repeat=3)), device=coords.device, dtype=torch.long
    )  # (K, 3)
    rows = []
    for offset in offsets:
        shifted = coords.long().clone()
        shifted[:, 1:] += offset
        inside = ((shifted[:, 1:] >= -1) & (shifted[:, 1:] <= extent)).all(dim=1)
        found = lookup_rows(table, grid_keys(shifted.clamp(min=-1), extent))
        rows.append(torch.where(inside, found, torch.full_like(found, -1)))
    result = torch.stack(rows)  # (K, N)
    voxels.cache[key] = result
    return result


class _KernelWeights(nn.Module):
    """Holds ``weight [out, k, k, k, in]`` and ``bias [out]`` under the spconv names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, kernel_size, kernel_size, kernel_size, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight.view(out_channels, -1), a=5**0.5)


class SparseConv3d(nn.Module):
    """Submanifold convolution (stride 1): outputs exactly at the input cells."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("submanifold convolution needs an odd kernel size")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.conv = _KernelWeights(in_channels, out_channels, kernel_size, bias)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        feats = x.feats
        weight = self.conv.weight.to(feats.dtype)
        k = self.kernel_size
        if k == 1:
            # spconv evaluates a 1x1x1 kernel as ``feats @ weight.view(in, out)``: the stored
            # [out, 1, 1, 1, in] memory read as an (in, out) matrix, not its transpose.  The
            # checkpoints were trained through that path, so it is reproduced exactly.
            out = feats @ weight.contiguous().view(self.in_channels, self.out_channels)
        else:
            neighbours = neighbour_map(x, k)  # (K, N)
            # (out, kx, ky, kz, in) -> (K, in, out)
            kernel = weight.reshape(self.out_channels, k**3, self.in_channels).permute(1, 2, 0)
            centre = k**3 // 2
            out = feats @ kernel[centre]  # the centre offset always hits the cell itself
            for offset in range(k**3):
                if offset == centre:
                    continue
                rows = neighbours[offset]
                valid = torch.nonzero(rows >= 0).squeeze(1)
                if valid.numel() == 0:
                    continue
                out.index_add_(0, valid, feats[rows[valid]] @ kernel[offset])
        if self.conv.bias is not None:
            out = out + self.conv.bias.to(out.dtype)
        return x.replace(out)
