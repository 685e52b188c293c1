"""From the mesh decoder's per-cell features to a triangle mesh (sparse FlexiCubes).

Each fine cell carries ``[sdf 8 | deform 8x3 | weights 21 | colour 8x6]`` for
its 8 corners.  As in the reference: the sdf gets a bias of ``-1/res``; corner
values shared by several cells are averaged into grid vertices; vertices no cell
touches read as outside (sdf 1, no deform, colour 0); vertex positions are
``v / res - 0.5 + (1 - 1e-8) / (2 res) * tanh(deform)``; cube weights are zero
where there is no cell.  Only cubes touching an inside vertex can hold surface,
so only those are built: no dense 257^3 grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.synchuman.stage2.flexicubes import flexicubes
from pipelines.synchuman.stage2.flexicubes_tables import CUBE_CORNERS

FEATURE_CHANNELS = 8 + 24 + 21 + 48


@dataclass
class MeshExtraction:
    vertices: torch.Tensor
    """(V, 3) float32, official frame (z up, inside [-0.5, 0.5]^3)."""
    faces: torch.Tensor
    """(F, 3) int64."""
    vertex_attrs: torch.Tensor | None
    """(V, 6) rgb + normal colour channels in [0, 1], or None."""


def _grid_index(points: torch.Tensor, side: int) -> torch.Tensor:
    p = points.long()
    return (p[:, 0] * side + p[:, 1]) * side + p[:, 2]


def extract_mesh(coords: torch.Tensor, feats: torch.Tensor, *, resolution: int = 256, use_color: bool = True) -> MeshExtraction:
    """coords (M, 3) fine cells, feats (M, 101) (or 53 without colour) -> mesh."""
    device = feats.device
    feats = feats.float()
    m = feats.shape[0]
    side = resolution + 1
    corners = torch.tensor(CUBE_CORNERS, device=device, dtype=torch.long)  # (8, 3)

    sdf = feats[:, 0:8].reshape(m, 8, 1) - 1.0 / resolution
    deform = feats[:, 8:32].reshape(m, 8, 3)
    weights = feats[:, 32:53]  # (M, 21)
    parts = [sdf, deform]
    if use_color:
        parts.append(feats[:, 53:101].reshape(m, 8, 6))
    corner_values = torch.cat(parts, dim=-1)  # (M, 8, A)

    # --- average corner values into the grid vertices the cells touch ----------
    cell_corners = coords.long().unsqueeze(1) + corners.unsqueeze(0)  # (M, 8, 3)
    corner_index = _grid_index(cell_corners.reshape(-1, 3), side)  # (M*8,)
    vertex_index, corner_to_vertex = torch.unique(corner_index, return_inverse=True)
    channels = corner_values.shape[-1]
    vertex_values = torch.zeros(vertex_index.shape[0], channels, device=device)
    vertex_values = vertex_values.scatter_reduce(
        0, corner_to_vertex.unsqueeze(1).expand(-1, channels), corner_values.reshape(-1, channels), reduce="mean", include_self=False
    )

    # --- candidate cubes: every cube with an inside vertex among its corners ----
    inside_vertices = vertex_index[vertex_values[:, 0] < 0]
    inside_pos = torch.stack([inside_vertices // side**2, (inside_vertices // side) % side, inside_vertices % side], dim=1)
    candidates = (inside_pos.unsqueeze(1) - corners.unsqueeze(0)).reshape(-1, 3)  # (I*8, 3)
    valid = ((candidates >= 0) & (candidates < resolution)).all(dim=1)
    cube_index = torch.unique(_grid_index(candidates[valid], resolution))  # sorted, x-major
    cube_pos = torch.stack([cube_index // resolution**2, (cube_index // resolution) % resolution, cube_index % resolution], dim=1)

    # --- the vertices of those cubes, with defaults where no cell wrote ---------
    cube_vertex_index = _grid_index((cube_pos.unsqueeze(1) + corners.unsqueeze(0)).reshape(-1, 3), side)
    local_index, cube_fx8 = torch.unique(cube_vertex_index, return_inverse=True)
    cube_fx8 = cube_fx8.reshape(-1, 8)
    local_values = torch.zeros(local_index.shape[0], channels, device=device)
    local_values[:, 0] = 1.0  # outside
    slot = torch.searchsorted(vertex_index, local_index).clamp(max=vertex_index.numel() - 1)
    known = vertex_index[slot] == local_index
    local_values[known] = vertex_values[slot[known]]
    local_pos = torch.stack([local_index // side**2, (local_index // side) % side, local_index % side], dim=1).float()
    positions = local_pos / resolution - 0.5 + (1 - 1e-8) / (resolution * 2) * torch.tanh(local_values[:, 1:4])

    # --- cube weights, zero where there is no cell -------------------------------
    cell_index = _grid_index(coords, resolution)
    order = torch.argsort(cell_index)
    sorted_cells = cell_index[order]
    slot = torch.searchsorted(sorted_cells, cube_index).clamp(max=sorted_cells.numel() - 1)
    has_cell = sorted_cells[slot] == cube_index
    cube_weights = torch.zeros(cube_index.shape[0], 21, device=device)
    cube_weights[has_cell] = weights[order[slot[has_cell]]]

    result = flexicubes(
        positions,
        local_values[:, 0],
        cube_fx8,
        cube_pos,
        resolution,
        beta=cube_weights[:, :12],
        alpha=cube_weights[:, 12:20],
        gamma=cube_weights[:, 20],
        vertex_attrs=local_values[:, 4:] if use_color else None,
    )
    return MeshExtraction(result.vertices, result.faces, result.vertex_attrs)
