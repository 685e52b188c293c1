"""Changing the resolution of sparse voxels: pooling, unpooling, subdivision."""

from __future__ import annotations

import torch

from pipelines.synchuman.sparse.tensor import SparseVoxels


def downsample(x: SparseVoxels, factor: int = 2) -> SparseVoxels:
    """Pool cells into ``coords // factor``.

    As in the reference, the running mean starts from a zero row that counts as
    one sample: a parent with ``n`` children gets ``sum(children) / (n + 1)``.
    The checkpoints were trained with this, so it is kept.  The coarse cells come out in increasing ``[batch, x, y, z]`` order.  The fine
    coordinates, the child-to-parent map and the fine cache are remembered so
    :func:`upsample` can undo the pooling.
    """
    coarse = x.coords.long().clone()
    coarse[:, 1:] //= factor
    extent = [int(coarse[:, i].max().item()) + 1 for i in range(1, 4)]
    # code = ((b * X + x) * Y + y) * Z + z
    code = ((coarse[:, 0] * extent[0] + coarse[:, 1]) * extent[1] + coarse[:, 2]) * extent[2] + coarse[:, 3]
    unique_code, parent = torch.unique(code, return_inverse=True)
    channels = x.feats.shape[1:]
    pooled = torch.zeros((unique_code.shape[0], *channels), dtype=x.feats.dtype, device=x.device)
    index = parent.view(-1, *([1] * len(channels))).expand_as(x.feats)
    pooled = pooled.scatter_reduce(0, index, x.feats, reduce="mean", include_self=True)
    z = unique_code % extent[2]
    y = (unique_code // extent[2]) % extent[1]
    xx = (unique_code // (extent[2] * extent[1])) % extent[0]
    b = unique_code // (extent[2] * extent[1] * extent[0])
    coords = torch.stack([b, xx, y, z], dim=1).to(torch.int32)
    out = SparseVoxels(coords, pooled)
    out.cache[f"unpool_{factor}"] = (x.coords, parent, x.cache)
    return out


def upsample(x: SparseVoxels, factor: int = 2) -> SparseVoxels:
    """Nearest upsampling back to the cells a :func:`downsample` pooled from."""
    try:
        fine_coords, parent, fine_cache = x.cache[f"unpool_{factor}"]
    except KeyError:
        raise ValueError("upsample needs a tensor produced by downsample") from None
    return SparseVoxels(fine_coords, x.feats[parent], fine_cache)


def subdivide(x: SparseVoxels) -> SparseVoxels:
    """Split every cell into its 8 children at ``2 * coord + {0, 1}^3``.

    Children copy the parent's features and are listed parent by parent, in
    lexicographic ``(dx, dy, dz)`` order.
    """
    offsets = torch.nonzero(torch.ones(2, 2, 2, device=x.device)).to(torch.int32)  # (8, 3)
    offsets = torch.cat([torch.zeros_like(offsets[:, :1]), offsets], dim=1)  # (8, 4)
    coords = x.coords.clone()
    coords[:, 1:] *= 2
    coords = (coords.unsqueeze(1) + offsets.unsqueeze(0)).reshape(-1, 4)  # (N*8, 4)
    feats = x.feats.unsqueeze(1).expand(-1, 8, *x.feats.shape[1:])
    feats = feats.reshape(-1, *x.feats.shape[1:])  # (N*8, C)
    return SparseVoxels(coords, feats)
