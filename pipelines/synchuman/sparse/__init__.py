"""Sparse voxel tensors and the operations stage 2 builds on, in plain PyTorch.

A :class:`SparseVoxels` holds the occupied cells of a regular grid (``coords``,
rows ``[batch, x, y, z]``) and one feature row per cell.  Everything here runs
on the CPU and on CUDA without compiled extensions:

* :mod:`.conv` - submanifold 3D convolution by neighbour gather, reading weights
  in spconv's ``[out, kx, ky, kz, in]`` layout;
* :mod:`.resample` - mean-pool downsampling, the matching nearest upsampling, and
  subdivision into 2x2x2 children;
* :mod:`.attention` - full, cross and (shifted) windowed attention over
  variable-length groups through ``scaled_dot_product_attention``;
* :mod:`.norm` - per-sample group norm.
"""

from pipelines.synchuman.sparse.tensor import SparseVoxels

__all__ = ["SparseVoxels"]
