"""The sparse voxel tensor: occupied grid cells and their features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SparseVoxels:
    """Features on the occupied cells of a regular 3D grid.

    ``coords`` is ``(N, 4)`` int32 with rows ``[batch, x, y, z]``, rows of one
    sample contiguous and samples in increasing batch order.  ``feats`` is
    ``(N, ...)``, one row per cell.  ``cache`` holds data that depends only on
    the coordinates (neighbour maps, window partitions, the coordinates before a
    downsampling) and is shared by every tensor derived with :meth:`replace`, so
    a stack of layers computes each of them once.
    """

    coords: torch.Tensor
    feats: torch.Tensor
    cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.coords.ndim != 2 or self.coords.shape[1] != 4:
            raise ValueError(f"coords must be (N, 4), got {tuple(self.coords.shape)}")
        if self.feats.shape[0] != self.coords.shape[0]:
            raise ValueError("coords and feats must have the same number of rows")

    def replace(self, feats: torch.Tensor) -> SparseVoxels:
        """Same cells (and cache), new features."""
        return SparseVoxels(self.coords, feats, self.cache)

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.coords[-1, 0].item()) + 1 if self.num_voxels else 0

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    def batch_slices(self) -> list[slice]:
        """One row slice per sample (rows of a sample are contiguous)."""
        key = "batch_slices"
        if key not in self.cache:
            counts = torch.bincount(self.coords[:, 0].long()).tolist()
            slices, start = [], 0
            for count in counts:
                slices.append(slice(start, start + count))
                start += count
            self.cache[key] = slices
        return self.cache[key]


def grid_keys(coords: torch.Tensor, extent: int) -> torch.Tensor:
    """Encode ``[batch, x, y, z]`` rows as one int64 key each.

    ``extent`` bounds every spatial coordinate to ``[-1, extent]`` so that a
    neighbour one step outside the grid still gets a distinct key.
    """
    c = coords.long() + torch.tensor([0, 1, 1, 1], device=coords.device)
    side = extent + 2
    # key = ((b * side + x) * side + y) * side + z
    return ((c[:, 0] * side + c[:, 1]) * side + c[:, 2]) * side + c[:, 3]


def lookup_rows(table_keys: torch.Tensor, query_keys: torch.Tensor) -> torch.Tensor:
    """Row of each query key in ``table_keys`` (unique, any order), or -1 if absent."""
    order = torch.argsort(table_keys)
    sorted_keys = table_keys[order]
    pos = torch.searchsorted(sorted_keys, query_keys).clamp_(max=max(sorted_keys.numel() - 1, 0))
    if sorted_keys.numel() == 0:
        return torch.full_like(query_keys, -1)
    found = sorted_keys[pos] == query_keys
    return torch.where(found, order[pos], torch.full_like(pos, -1))
