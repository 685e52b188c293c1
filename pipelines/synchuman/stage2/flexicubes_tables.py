"""Lookup tables of dual marching cubes, derived here from first principles.

Cube corner ``j`` sits at ``(j & 1, (j >> 1) & 1, (j >> 2) & 1)`` (x, y, z) and
the 12 edges join the corner pairs in :data:`CUBE_EDGES`.  A corner is *inside*
when its signed distance is negative; the 8 inside bits form the case id.

For each case the surface crossing the cube splits into patches; each patch
becomes one dual vertex, tied to the cut edges it crosses.  On a cube face with
two cut edges the patch joins them.  On an *ambiguous* face (two inside corners
diagonally opposite) the inside corners are kept apart: each inside corner's two
cut edges are joined.  Patches are the connected groups of cut edges.

Where a cube has exactly one ambiguous face and forms a single patch (5 or 6
inside corners), its neighbour across that face may resolve the same face the
other way.  :data:`CHECK_TABLE` flags those cases with the direction of the
face and the complementary case; a cube whose neighbour is flagged too switches
to the complement so both sides agree.
"""

from __future__ import annotations

import torch

CUBE_CORNERS = [(j & 1, (j >> 1) & 1, (j >> 2) & 1) for j in range(8)]
CUBE_EDGES = [(0, 1), (1, 5), (4, 5), (0, 4), (2, 3), (3, 7), (6, 7), (2, 6), (2, 0), (3, 1), (7, 5), (6, 4)]
"""Corner pairs of the 12 edges; every edge is listed in the same direction in every cube."""

MAX_PATCHES = 4
MAX_PATCH_EDGES = 7


def _cube_faces() -> list[tuple[int, int, list[int]]]:
    """(axis, side, corners) of the 6 faces."""
    return [(axis, side, [j for j in range(8) if CUBE_CORNERS[j][axis] == side]) for axis in range(3) for side in (0, 1)]


def _diagonal(a: int, b: int) -> bool:
    return sum(abs(CUBE_CORNERS[a][k] - CUBE_CORNERS[b][k]) for k in range(3)) == 2


def patches(case: int) -> list[list[int]]:
    """Cut-edge groups of one case, each sorted by edge id.

    Groups are listed by the lowest corner they cut off: an inside corner when at
    most 4 corners are inside, else an outside corner (the order of dual vertices
    in the output follows it).
    """
    inside = [(case >> j) & 1 for j in range(8)]
    cut = [e for e, (a, b) in enumerate(CUBE_EDGES) if inside[a] != inside[b]]
    parent = {e: e for e in cut}

    def find(e: int) -> int:
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    for _, _, corners in _cube_faces():
        face_cut = [e for e in cut if set(CUBE_EDGES[e]) <= set(corners)]
        if len(face_cut) == 2:
            parent[find(face_cut[0])] = find(face_cut[1])
        elif len(face_cut) == 4:
            for corner in corners:
                if inside[corner]:
                    a, b = [e for e in face_cut if corner in CUBE_EDGES[e]]
                    parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for e in cut:
        groups.setdefault(find(e), []).append(e)
    side = 1 if sum(inside) <= 4 else 0

    def lowest_corner(group: list[int]) -> int:
        return min(j for e in group for j in CUBE_EDGES[e] if inside[j] == side)

    return sorted((sorted(g) for g in groups.values()), key=lowest_corner)


def _check_entry(case: int) -> list[int]:
    inside = [(case >> j) & 1 for j in range(8)]
    ambiguous = []
    for axis, side, corners in _cube_faces():
        ins = [j for j in corners if inside[j]]
        if len(ins) == 2 and _diagonal(*ins):
            ambiguous.append((axis, side))
    if len(ambiguous) == 1 and len(patches(case)) == 1:
        axis, side = ambiguous[0]
        direction = [0, 0, 0]
        direction[axis] = 1 if side == 1 else -1
        return [1, *direction, 255 - case]
    return [0, 0, 0, 0, 0]


def build_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dmc (256, 4, 7)`` edge groups padded with -1, ``num_vd (256,)``, ``check (256, 5)``."""
    dmc = torch.full((256, MAX_PATCHES, MAX_PATCH_EDGES), -1, dtype=torch.long)
    num_vd = torch.zeros(256, dtype=torch.long)
    check = torch.zeros(256, 5, dtype=torch.long)
    for case in range(256):
        groups = patches(case)
        num_vd[case] = len(groups)
        for i, group in enumerate(groups):
            dmc[case, i, : len(group)] = torch.tensor(group)
        check[case] = torch.tensor(_check_entry(case))
    return dmc, num_vd, check


DMC_TABLE, NUM_VD_TABLE, CHECK_TABLE = build_tables()
