"""FlexiCubes surface extraction (Shen et al. 2023) on a sparse set of cubes, in PyTorch.

Inputs describe only the cubes that can hold surface: per vertex a position,
a signed distance and optional attributes; per cube its 8 vertex ids (corner
order of :data:`~.flexicubes_tables.CUBE_CORNERS`), its integer position and the
FlexiCubes weights (beta per edge, alpha per corner, gamma per cube, raw).
Vertex ids must grow with the vertices' grid index and cubes must be sorted by
grid index: the output is then ordered as the dense reference orders it.

Steps (inference mode):
1. surface cubes have corners on both sides (sdf < 0 is inside);
2. case ids, with ambiguous faces resolved consistently between neighbours;
3. each cut edge gets the crossing ``(x0 w1 - x1 w0) / (w1 - w0)``, ``w = sdf * alpha``;
4. each patch of each cube gets a dual vertex: the beta-weighted mean of its crossings;
5. each cut edge shared by 4 surface cubes gives a quad of their dual vertices,
   oriented towards positive sdf and split along the diagonal with larger gamma product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.synchuman.stage2.flexicubes_tables import CHECK_TABLE, CUBE_EDGES, DMC_TABLE, NUM_VD_TABLE

WEIGHT_SCALE = 0.99
_EDGE_CORNERS = torch.tensor(CUBE_EDGES, dtype=torch.long).reshape(-1)  # (24,) corner pairs
_SPLIT_A = torch.tensor([0, 1, 2, 0, 2, 3])
_SPLIT_B = torch.tensor([0, 1, 3, 3, 1, 2])


@dataclass
class FlexiCubesResult:
    vertices: torch.Tensor
    """(V, 3) float positions of the dual vertices."""
    faces: torch.Tensor
    """(F, 3) int64."""
    vertex_attrs: torch.Tensor | None
    """(V, A) attributes interpolated like the positions (after a sigmoid), or None."""


def _interpolate(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Zero crossing along edges: weights (E, 2, 1), values (E, 2, D) -> (E, D)."""
    w0, w1 = weights[:, 0], weights[:, 1]
    return (values[:, 0] * w1 - values[:, 1] * w0) / (w1 - w0)


def _case_ids(occ_fx8: torch.Tensor, cube_pos: torch.Tensor, resolution: int) -> torch.Tensor:
    """Case id of each surface cube, ambiguous faces resolved between neighbours."""
    device = occ_fx8.device
    case = (occ_fx8.long() * (2 ** torch.arange(8, device=device))).sum(-1)
    check = CHECK_TABLE.to(device)[case]  # (S, 5)
    problem = torch.nonzero(check[:, 0] == 1).squeeze(1)
    if problem.numel() == 0:
        return case
    pos = cube_pos[problem].long()
    neighbour = pos + check[problem, 1:4]
    inside = ((neighbour >= 0) & (neighbour < resolution)).all(dim=1)
    problem, pos, neighbour = problem[inside], pos[inside], neighbour[inside]

    def key(p: torch.Tensor) -> torch.Tensor:
        return (p[:, 0] * resolution + p[:, 1]) * resolution + p[:, 2]

    table = torch.sort(key(pos)).values
    query = key(neighbour)
    slot = torch.searchsorted(table, query).clamp(max=max(table.numel() - 1, 0))
    neighbour_is_problem = table[slot] == query
    flip = problem[neighbour_is_problem]
    case = case.clone()
    case[flip] = check[flip, 4]
    return case


def flexicubes(
    vertices: torch.Tensor,
    sdf: torch.Tensor,
    cube_fx8: torch.Tensor,
    cube_pos: torch.Tensor,
    resolution: int,
    beta: torch.Tensor,
    alpha: torch.Tensor,
    gamma: torch.Tensor,
    vertex_attrs: torch.Tensor | None = None,
) -> FlexiCubesResult:
    """Extract the mesh.  vertices (V, 3), sdf (V,), cube_fx8 (C, 8), cube_pos (C, 3),
    beta (C, 12), alpha (C, 8), gamma (C,) raw weights, vertex_attrs (V, A) raw or None."""
    device = vertices.device
    edge_corners = _EDGE_CORNERS.to(device)
    occ = sdf < 0
    occ_fx8 = occ[cube_fx8]  # (C, 8)
    inside_count = occ_fx8.sum(-1)
    surf = (inside_count > 0) & (inside_count < 8)
    if not bool(surf.any()):
        attrs = None if vertex_attrs is None else vertex_attrs.new_zeros(0, vertex_attrs.shape[1])
        return FlexiCubesResult(vertices.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=device), attrs)

    cubes = cube_fx8[surf]  # (S, 8)
    beta = torch.tanh(beta[surf]) * WEIGHT_SCALE + 1
    alpha = torch.tanh(alpha[surf]) * WEIGHT_SCALE + 1
    gamma = torch.sigmoid(gamma[surf]) * WEIGHT_SCALE + (1 - WEIGHT_SCALE) / 2
    attrs = torch.sigmoid(vertex_attrs) if vertex_attrs is not None else None
    case = _case_ids(occ_fx8[surf], cube_pos[surf], resolution)
    num_cubes = cubes.shape[0]

    # --- cut edges: unique over the 12 edges of every surface cube -------------
    all_edges = cubes[:, edge_corners].reshape(-1, 2)  # (S*12, 2) vertex ids
    unique_edges, edge_of_slot, counts = torch.unique(all_edges, dim=0, return_inverse=True, return_counts=True)
    is_cut = occ[unique_edges].sum(-1) == 1  # (U,)
    cut_id = torch.full((unique_edges.shape[0],), -1, dtype=torch.long, device=device)
    cut_id[is_cut] = torch.arange(int(is_cut.sum()), device=device)
    slot_cut = cut_id[edge_of_slot]  # (S*12,) cut-edge id of each cube edge, -1 if not cut
    slot_is_cut = is_cut[edge_of_slot]
    slot_count = counts[edge_of_slot]
    cut_edges = unique_edges[is_cut]  # (E, 2)
    edge_x = vertices[cut_edges]  # (E, 2, 3)
    edge_s = sdf[cut_edges].unsqueeze(-1)  # (E, 2, 1)

    # --- dual vertices: one per patch, patches grouped by how many a cube has ---
    num_vd = NUM_VD_TABLE.to(device)[case]
    dmc = DMC_TABLE.to(device)
    members_edge, members_vd, members_cube = [], [], []
    vd_gamma = []
    total = 0
    for count in torch.unique(num_vd).tolist():
        chosen = torch.nonzero(num_vd == count).squeeze(1)  # cubes with `count` patches
        groups = dmc[case[chosen], :count].reshape(-1, count * 7)  # (K, count*7) edge ids or -1
        vd_ids = total + torch.arange(chosen.numel() * count, device=device).unsqueeze(-1).expand(-1, 7)
        vd_ids = vd_ids.reshape(-1, count * 7)
        cube_ids = chosen.unsqueeze(-1).expand(-1, count * 7)
        used = groups != -1
        members_edge.append(groups[used])
        members_vd.append(vd_ids[used])
        members_cube.append(cube_ids[used])
        vd_gamma.append(gamma[chosen].repeat_interleave(count))
        total += chosen.numel() * count
    edge_in_cube = torch.cat(members_edge)
    member_vd = torch.cat(members_vd)
    member_cube = torch.cat(members_cube)
    vd_gamma = torch.cat(vd_gamma)

    slot = member_cube * 12 + edge_in_cube  # cube-edge slot of each patch member
    member_edge = slot_cut[slot]
    alpha_pair = alpha[:, edge_corners].reshape(-1, 2)[slot].unsqueeze(-1)  # (M, 2, 1)
    weights = edge_s[member_edge] * alpha_pair
    crossing = _interpolate(weights, edge_x[member_edge])  # (M, 3)
    beta_m = beta.reshape(-1)[slot].unsqueeze(-1)  # (M, 1)
    beta_sum = torch.zeros(total, 1, device=device, dtype=vertices.dtype).index_add_(0, member_vd, beta_m)
    dual = torch.zeros(total, 3, device=device, dtype=vertices.dtype).index_add_(0, member_vd, crossing * beta_m)
    dual = dual / beta_sum
    dual_attrs = None
    if attrs is not None:
        edge_a = attrs[cut_edges]  # (E, 2, A)
        mixed = _interpolate(weights, edge_a[member_edge])
        dual_attrs = torch.zeros(total, attrs.shape[1], device=device, dtype=attrs.dtype)
        dual_attrs = dual_attrs.index_add_(0, member_vd, mixed * beta_m) / beta_sum
    vd_of_slot = torch.zeros(num_cubes * 12, dtype=torch.long, device=device)
    vd_of_slot[slot] = member_vd

    # --- quads around cut edges shared by four surface cubes --------------------
    quad_slots = slot_is_cut & (slot_count == 4)
    quad_edge = slot_cut[quad_slots]
    quad_vd = vd_of_slot[quad_slots]
    edge_sorted, order = torch.sort(quad_edge, stable=True)
    quads = quad_vd[order].reshape(-1, 4)  # (Q, 4): the four cubes around each edge, in cube order
    first_s = sdf[cut_edges[edge_sorted.reshape(-1, 4)[:, 0], 0]]
    flip = first_s > 0
    quads = torch.cat([quads[flip][:, [0, 1, 3, 2]], quads[~flip][:, [2, 3, 1, 0]]])
    g = vd_gamma[quads]  # (Q, 4)
    split_a = (g[:, 0] * g[:, 2]) > (g[:, 1] * g[:, 3])
    faces = torch.where(split_a.unsqueeze(1), quads[:, _SPLIT_A.to(device)], quads[:, _SPLIT_B.to(device)])
    return FlexiCubesResult(dual, faces.reshape(-1, 3), dual_attrs)
