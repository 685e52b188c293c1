"""Attention over sparse voxels through ``scaled_dot_product_attention``.

Tokens are the rows of a :class:`SparseVoxels`; attention never crosses
samples.  ``full`` attends within each sample, ``windowed`` within cubes of
``window`` cells (after shifting every coordinate by ``shift``), ``cross`` from
each sample's cells to that sample's context tokens.  Groups of different
lengths are padded into one batch with a key mask, so one SDPA call serves them
all; where every group has the same length no mask is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.synchuman.sparse.tensor import SparseVoxels


def _grouped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """Self-attention within groups.  q, k, v: (N, H, C); group: (N,) sorted ids."""
    counts = torch.bincount(group, minlength=num_groups)
    lengths = counts.tolist()
    n, heads, dim = q.shape
    if len(set(lengths)) == 1:
        length = lengths[0]
        # (N, H, C) -> (G, H, L, C)
        qb, kb, vb = (t.reshape(num_groups, length, heads, dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(qb, kb, vb)
        return out.transpose(1, 2).reshape(n, heads, dim)
    longest = max(lengths)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n, device=q.device) - starts[group]  # position inside the group
    padded = []
    for t in (q, k, v):
        buf = t.new_zeros(num_groups, longest, heads, dim)
        buf[group, slot] = t
        padded.append(buf.transpose(1, 2))  # (G, H, L, C)
    valid = torch.zeros(num_groups, longest, dtype=torch.bool, device=q.device)
    valid[group, slot] = True
    mask = valid[:, None, None, :]  # (G, 1, 1, L): which keys exist
    out = F.scaled_dot_product_attention(*padded, attn_mask=mask)
    return out.transpose(1, 2)[group, slot]  # (N, H, C)


def full_self_attention(x: SparseVoxels, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention among all cells of each sample.  q, k, v: (N, H, C) -> (N, H, C)."""
    group = x.coords[:, 0].long()
    return _grouped_attention(q, k, v, group, x.batch_size)


def window_partition(x: SparseVoxels, window: int, shift: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sort order into windows, the window id of each sorted row, and the window count."""
    key = f"window_{window}_{shift}"
    if key not in x.cache:
        cells = x.coords.long().clone()
        cells[:, 1:] = (cells[:, 1:] + shift) // window
        extent = [int(cells[:, i].max().item()) + 1 for i in range(1, 4)]
        code = ((cells[:, 0] * extent[0] + cells[:, 1]) * extent[1] + cells[:, 2]) * extent[2] + cells[:, 3]
        order = torch.argsort(code, stable=True)
        _, window_id = torch.unique(code[order], return_inverse=True)
        x.cache[key] = (order, window_id, int(window_id.max().item()) + 1 if window_id.numel() else 0)
    return x.cache[key]


def windowed_self_attention(
    x: SparseVoxels, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, shift: int
) -> torch.Tensor:
    """Attention within cubes of ``window`` cells after shifting coordinates by ``shift``."""
    order, window_id, num_windows = window_partition(x, window, shift)
    out_sorted = _grouped_attention(q[order], k[order], v[order], window_id, num_windows)
    out = torch.empty_like(out_sorted)
    out[order] = out_sorted
    return out


def cross_attention(x: SparseVoxels, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each sample's cells attend to its context.  q: (N, H, C); k, v: (B, M, H, C)."""
    out = torch.empty_like(q)
    for b, rows in enumerate(x.batch_slices()):
        # (n, H, C) -> (1, H, n, C)
        qb = q[rows].transpose(0, 1).unsqueeze(0)
        kb = k[b].transpose(0, 1).unsqueeze(0)
        vb = v[b].transpose(0, 1).unsqueeze(0)
        out[rows] = F.scaled_dot_product_attention(qb, kb, vb)[0].transpose(0, 1)
    return out
