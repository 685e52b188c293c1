"""Sparse voxel ops and FlexiCubes behave as their dense definitions say (no fixtures needed)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from pipelines.synchuman.sparse.attention import full_self_attention, windowed_self_attention
from pipelines.synchuman.sparse.conv import SparseConv3d
from pipelines.synchuman.sparse.resample import downsample, subdivide, upsample
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.flexicubes_tables import CHECK_TABLE, CUBE_EDGES, DMC_TABLE, NUM_VD_TABLE
from pipelines.synchuman.stage2.mesh_extraction import extract_mesh


def _random_cells(count: int, side: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(side**3, generator=gen)[:count].sort().values
    xyz = torch.stack([flat // side**2, (flat // side) % side, flat % side], 1)
    return torch.cat([torch.zeros(count, 1, dtype=torch.long), xyz], 1).int()


def test_submanifold_conv_equals_dense_conv_at_occupied_cells():
    torch.manual_seed(0)
    coords = _random_cells(300, 12, seed=1)
    feats = torch.randn(300, 5)
    conv = SparseConv3d(5, 7, 3)
    torch.nn.init.normal_(conv.conv.bias)
    out = conv(SparseVoxels(coords, feats)).feats
    dense = torch.zeros(1, 5, 12, 12, 12)
    x, y, z = coords[:, 1:].long().unbind(1)
    dense[0, :, x, y, z] = feats.t()
    # spconv KRSC [out, kx, ky, kz, in] -> Conv3d [out, in, kx, ky, kz]
    ref = F.conv3d(dense, conv.conv.weight.permute(0, 4, 1, 2, 3), conv.conv.bias, padding=1)[0][:, x, y, z].t()
    assert (out - ref).abs().max() < 1e-5


def test_pointwise_conv_reads_weights_as_spconv_does():
    torch.manual_seed(0)
    conv = SparseConv3d(3, 2, 1)
    feats = torch.randn(4, 3)
    out = conv(SparseVoxels(_random_cells(4, 4, seed=2), feats)).feats
    flat = conv.conv.weight.detach().reshape(-1)  # memory order of [out, 1, 1, 1, in]
    assert torch.allclose(out, feats @ flat.view(3, 2) + conv.conv.bias, atol=1e-6)


def test_downsample_then_upsample_restores_cells_and_pools_with_reference_mean():
    coords = _random_cells(200, 8, seed=3)
    feats = torch.randn(200, 4)
    coarse = downsample(SparseVoxels(coords, feats), 2)
    parents = coords.clone()
    parents[:, 1:] //= 2
    assert torch.equal(coarse.coords, torch.unique(parents, dim=0))
    row = coarse.coords[0]
    children = (parents == row).all(1)
    assert torch.allclose(coarse.feats[0], feats[children].sum(0) / (children.sum() + 1))
    fine = upsample(coarse, 2)
    assert torch.equal(fine.coords, coords)
    assert torch.equal(fine.feats[children], coarse.feats[0].expand(int(children.sum()), -1))


def test_subdivide_lists_children_in_lexicographic_order():
    coords = torch.tensor([[0, 1, 2, 3]], dtype=torch.int32)
    out = subdivide(SparseVoxels(coords, torch.tensor([[5.0]])))
    expected = [[0, 2 + a, 4 + b, 6 + c] for a, b, c in itertools.product((0, 1), repeat=3)]
    assert out.coords.tolist() == expected
    assert out.feats.flatten().tolist() == [5.0] * 8


@pytest.mark.parametrize("shift", [0, 4])
def test_windowed_attention_equals_masked_dense_attention(shift):
    coords = _random_cells(250, 20, seed=4)
    q, k, v = torch.randn(3, 250, 2, 8).unbind(0)
    x = SparseVoxels(coords, torch.zeros(250, 1))
    out = windowed_self_attention(x, q, k, v, window=8, shift=shift)
    window = (coords[:, 1:].long() + shift) // 8
    same = (window[:, None] == window[None]).all(-1)  # (N, N)
    scores = torch.einsum("nhc,mhc->hnm", q, k) / 8**0.5
    ref = torch.einsum("hnm,mhc->nhc", scores.masked_fill(~same, float("-inf")).softmax(-1), v)
    assert (out - ref).abs().max() < 1e-5
    assert (full_self_attention(x, q, k, v) - torch.einsum("hnm,mhc->nhc", scores.softmax(-1), v)).abs().max() < 1e-5


def test_tables_cover_every_case_consistently():
    for case in range(256):
        count = int(NUM_VD_TABLE[case])
        used = DMC_TABLE[case, :count]
        edges = used[used >= 0].tolist()
        inside = [(case >> j) & 1 for j in range(8)]
        cut = [e for e, (a, b) in enumerate(CUBE_EDGES) if inside[a] != inside[b]]
        assert sorted(edges) == cut, case  # every cut edge belongs to exactly one patch
        assert (DMC_TABLE[case, count:] == -1).all()
        if CHECK_TABLE[case, 0]:
            assert int(CHECK_TABLE[case, 4]) == 255 - case
            assert int(NUM_VD_TABLE[255 - case]) == 2  # the complement separates the face


def test_sparse_flexicubes_closes_a_sphere():
    res = 64
    axis = torch.arange(16, 48)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    corners = torch.tensor([(j & 1, (j >> 1) & 1, (j >> 2) & 1) for j in range(8)])
    points = (grid.unsqueeze(1) + corners).float()  # (M, 8, 3) corner positions in cells
    radius = 10.3
    sdf = ((points - 32).norm(dim=-1) - radius) / res + 1.0 / res  # the extractor subtracts 1/res
    feats = torch.zeros(len(grid), 101)
    feats[:, :8] = sdf
    mesh = extract_mesh(grid, feats, resolution=res)
    v, f = mesh.vertices.double(), mesh.faces
    # closed and consistently oriented: every directed edge has exactly one opposite
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = set(map(tuple, directed.tolist()))
    assert len(keys) == len(directed)
    assert all((b, a) in keys for a, b in keys)
    volume = torch.einsum("fi,fi->f", v[f[:, 0]], torch.cross(v[f[:, 1]], v[f[:, 2]], dim=1)).sum() / 6
    expected = 4 / 3 * torch.pi * (radius / res) ** 3
    assert abs(volume.item() - expected) / expected < 0.03  # positive: faces point outwards
    distance = (v - 0.0).norm(dim=1) * res
    assert (distance - radius).abs().max() < 0.5
