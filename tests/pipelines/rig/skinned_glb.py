"""A rigged GLB read back as a skinned model that can be posed (linear blend skinning).

This reads the file the way a viewer does, from its nodes, skin and
accessors, independently of how the rig was computed: joint matrices from
the node hierarchy (translation, rotation, scale), skinning matrices
``global(joint) @ inverse_bind(joint)``, vertices blended by ``WEIGHTS_0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.rig.glb import GlbDocument


@dataclass
class SkinnedModel:
    doc: GlbDocument
    vertices: np.ndarray
    """(V, 3) rest positions, y up."""
    faces: np.ndarray
    """(F, 3) int64."""
    joint_nodes: list[int]
    """Node index of each skin joint."""
    names: list[str]
    joints: np.ndarray
    """(V, 4) indices into the skin's joints."""
    weights: np.ndarray
    """(V, 4) float32."""
    inverse_bind: np.ndarray
    """(J, 4, 4) row-major."""

    @classmethod
    def from_glb(cls, data: bytes) -> SkinnedModel:
        doc = GlbDocument.parse(data)
        gltf = doc.gltf
        (skin,) = gltf["skins"]
        (node,) = [n for n in gltf["nodes"] if "mesh" in n]
        assert node["skin"] == 0
        (primitive,) = gltf["meshes"][node["mesh"]]["primitives"]
        attributes = primitive["attributes"]
        ibm = doc.read_accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
        return cls(
            doc=doc,
            vertices=doc.read_accessor(attributes["POSITION"]).astype(np.float64),
            faces=doc.read_accessor(primitive["indices"]).astype(np.int64).reshape(-1, 3),
            joint_nodes=list(skin["joints"]),
            names=[gltf["nodes"][i]["name"] for i in skin["joints"]],
            joints=doc.read_accessor(attributes["JOINTS_0"]).astype(np.int64),
            weights=doc.read_accessor(attributes["WEIGHTS_0"]).astype(np.float64),
            inverse_bind=ibm.astype(np.float64),
        )

    def joint(self, name: str) -> int:
        return self.names.index("mixamorig:" + name)

    def global_matrices(self, local_rotations: dict[int, Rotation] | None = None) -> dict[int, np.ndarray]:
        """Node index -> (4, 4) world matrix, with ``local_rotations`` (node -> rotation) replacing the rest."""
        nodes = self.doc.gltf["nodes"]
        local_rotations = local_rotations or {}
        out: dict[int, np.ndarray] = {}

        def visit(index: int, parent: np.ndarray) -> None:
            node = nodes[index]
            local = np.eye(4)
            rotation = local_rotations.get(index, Rotation.from_quat(node.get("rotation", [0, 0, 0, 1])))
            local[:3, :3] = rotation.as_matrix() * np.asarray(node.get("scale", [1, 1, 1]))
            local[:3, 3] = node.get("translation", [0, 0, 0])
            out[index] = parent @ local
            for child in node.get("children", []):
                visit(child, out[index])

        for root in self.doc.gltf["scenes"][self.doc.gltf.get("scene", 0)]["nodes"]:
            visit(root, np.eye(4))
        return out

    def rest_positions(self) -> np.ndarray:
        """(J, 3) joint positions at rest."""
        matrices = self.global_matrices()
        return np.stack([matrices[n][:3, 3] for n in self.joint_nodes])

    def pose(self, local_rotations: dict[str, Rotation]) -> np.ndarray:
        """(V, 3) vertices with the named joints (without prefix) turned to ``local_rotations``."""
        by_node = {self.joint_nodes[self.joint(name)]: r for name, r in local_rotations.items()}
        matrices = self.global_matrices(by_node)
        skinning = np.stack([matrices[n] @ ibm for n, ibm in zip(self.joint_nodes, self.inverse_bind)])  # (J, 4, 4)
        homogeneous = np.concatenate([self.vertices, np.ones((len(self.vertices), 1))], axis=1)  # (V, 4)
        blended = np.einsum("vk,vkij->vij", self.weights, skinning[self.joints])  # (V, 4, 4)
        return np.einsum("vij,vj->vi", blended, homogeneous)[:, :3]
