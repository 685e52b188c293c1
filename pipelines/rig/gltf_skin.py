"""A textured GLB plus a skin: joint nodes, JOINTS_0/WEIGHTS_0, inverse bind matrices, a clip.

The model's own content (mesh, texture, material) is kept byte for byte;
the rig is added next to it:

* the joints become nodes named ``mixamorig:<Joint>``, the hips a root of the
  scene, each child placed by translation from its parent (rest rotations
  are identity, the rest pose is the photo's pose);
* every primitive gets ``JOINTS_0`` (unsigned short) and ``WEIGHTS_0``
  (float, rows summing to 1) and its node the skin;
* the inverse bind matrix of a joint at rest position p is the translation
  by -p (column-major 4x4), since joints are unrotated at rest;
* the clip is one glTF animation with a linear rotation sampler per joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.rig.clip import Clip
from pipelines.rig.glb import ARRAY_BUFFER, GlbDocument
from pipelines.rig.skeleton import PREFIX

TRANSFORM_KEYS = ("matrix", "translation", "rotation", "scale")


@dataclass
class SkinnedGeometry:
    """The triangles of every primitive of the GLB's mesh nodes, stacked."""

    vertices: np.ndarray
    """(V, 3) float32 positions, glTF frame (y up), primitives one after another."""
    faces: np.ndarray
    """(F, 3) int64 indices into ``vertices``."""
    primitives: list[dict]
    """The primitives' JSON objects, in stacking order."""
    counts: list[int]
    """Vertices of each primitive."""


def mesh_geometry(doc: GlbDocument) -> SkinnedGeometry:
    """Triangles of the scene's mesh nodes, which must carry no transform (a skin ignores it)."""
    gltf = doc.gltf
    vertices, faces, primitives, counts = [], [], [], []
    offset = 0
    seen: set[int] = set()
    for node in gltf.get("nodes", []):
        if "mesh" not in node or node["mesh"] in seen:
            continue
        if any(key in node for key in TRANSFORM_KEYS):
            raise ValueError("mesh nodes with a transform cannot be skinned as they are")
        seen.add(node["mesh"])
        for primitive in gltf["meshes"][node["mesh"]]["primitives"]:
            if primitive.get("mode", 4) != 4:
                raise ValueError("only triangle primitives can be skinned")
            positions = doc.read_accessor(primitive["attributes"]["POSITION"]).astype(np.float32)
            if "indices" in primitive:
                indices = doc.read_accessor(primitive["indices"]).astype(np.int64).reshape(-1, 3)
            else:
                indices = np.arange(len(positions), dtype=np.int64).reshape(-1, 3)
            vertices.append(positions)
            faces.append(indices + offset)
            primitives.append(primitive)
            counts.append(len(positions))
            offset += len(positions)
    if not primitives:
        raise ValueError("the GLB has no mesh to rig")
    return SkinnedGeometry(np.concatenate(vertices), np.concatenate(faces), primitives, counts)


def add_skin(
    doc: GlbDocument,
    geometry: SkinnedGeometry,
    names: tuple[str, ...],
    parents: np.ndarray,
    positions: np.ndarray,
    joints: np.ndarray,
    weights: np.ndarray,
    clip: Clip,
) -> None:
    """Add the skeleton (rest ``positions`` (J, 3), y-up), the skin and ``clip`` to ``doc`` in place.

    ``joints`` (V, 4) and ``weights`` (V, 4) follow ``geometry.vertices``.
    """
    gltf = doc.gltf
    nodes = gltf.setdefault("nodes", [])
    first = len(nodes)
    for joint, name in enumerate(names):
        parent = int(parents[joint])
        offset = positions[joint] - (positions[parent] if parent >= 0 else 0.0)
        node = {"name": PREFIX + name, "translation": [float(v) for v in offset]}
        children = [first + int(c) for c in np.flatnonzero(parents == joint)]
        if children:
            node["children"] = children
        nodes.append(node)
    gltf["scenes"][gltf.get("scene", 0)]["nodes"].append(first)

    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (len(names), 1, 1))  # (J, 4, 4)
    inverse_bind[:, :3, 3] = -positions
    ibm = doc.append_accessor(inverse_bind.transpose(0, 2, 1).reshape(-1, 16), "MAT4")  # column-major
    gltf["skins"] = [
        {"name": "mixamorig", "joints": list(range(first, first + len(names))), "skeleton": first, "inverseBindMatrices": ibm}
    ]
    for node in nodes[:first]:
        if "mesh" in node:
            node["skin"] = 0

    start = 0
    for primitive, count in zip(geometry.primitives, geometry.counts, strict=True):
        rows = slice(start, start + count)
        primitive["attributes"]["JOINTS_0"] = doc.append_accessor(
            joints[rows].astype(np.uint16), "VEC4", target=ARRAY_BUFFER
        )
        primitive["attributes"]["WEIGHTS_0"] = doc.append_accessor(
            weights[rows].astype(np.float32), "VEC4", target=ARRAY_BUFFER
        )
        start += count

    samplers, channels = [], []
    for track in clip.tracks:
        times = doc.append_accessor(track.times.astype(np.float32), "SCALAR", with_bounds=True)
        values = doc.append_accessor(track.rotations.astype(np.float32), "VEC4")
        channels.append({"sampler": len(samplers), "target": {"node": first + track.joint, "path": "rotation"}})
        samplers.append({"input": times, "output": values, "interpolation": "LINEAR"})
    gltf["animations"] = [{"name": clip.name, "samplers": samplers, "channels": channels}]
