"""An animation-ready avatar: the exported GLB with a humanoid skeleton, skin weights and a clip.

``rig_glb(glb, front_view)`` takes the textured model a pipeline exported
(``output.glb``) and the stage-1 front view it was built from, and returns
``rigged.glb``: the same mesh and texture, skinned to a Mixamo-named
skeleton in the photo's pose, with a short waving clip.  Steps, timed in
``RiggedModel.timings`` (seconds):

1. ``pose``      MediaPipe Pose on the front view (``pipelines.person.pose``);
2. ``solid``     the mesh, welded across UV seams, as a solid queried by rays
                 (``volume.py``);
3. ``skeleton``  joints from the landmarks through the front camera, depth at
                 the centre of each limb's cross-section, all inside the mesh
                 (``skeleton.py``);
4. ``weights``   heat-diffusion skin weights, at most 4 influences a vertex
                 (``skin_weights.py``);
5. ``encode``    the clip (``clip.py``) and the glTF skin (``gltf_skin.py``).

Nothing here uses a body model: no SMPL or SMPL-X, whose licences forbid
commercial use; the skeleton comes from the photo and the mesh alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipelines.base import PipelineInputError
from pipelines.export.gltf import Z_UP_TO_Y_UP, to_y_up
from pipelines.rig.clip import wave_clip
from pipelines.rig.glb import GlbDocument
from pipelines.rig.gltf_skin import add_skin, mesh_geometry
from pipelines.rig.skeleton import Skeleton, place_skeleton
from pipelines.rig.skin_weights import heat_weights, weld
from pipelines.rig.volume import SolidMesh

__all__ = ["RiggedModel", "rig_glb"]


@dataclass
class RiggedModel:
    glb: bytes
    """``rigged.glb``: the model, its skin and the clip."""
    skeleton: Skeleton
    """The joints at rest, official frame (z up)."""
    timings: dict[str, float] = field(default_factory=dict)


def rig_glb(glb: bytes, front_view: Image.Image) -> RiggedModel:
    """Rig the exported model ``glb`` using the square stage-1 ``front_view`` (RGB) it was built from.

    Raises :class:`PipelineInputError` with code ``no_pose`` when no body pose
    is found on the front view, ``rig_unavailable`` when MediaPipe (the
    ``segment`` extra) is not installed.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    # 1. pose
    try:
        from pipelines.person.pose import estimate_pose

        pose = estimate_pose(np.asarray(front_view.convert("RGB")))
    except ImportError as exc:
        raise PipelineInputError(
            "rig_unavailable", "rigging needs the pose model (install the 'segment' extra)"
        ) from exc
    if pose is None:
        raise PipelineInputError("no_pose", "no body pose was found in the front view, so the model cannot be rigged")
    lap("pose")

    # 2. the mesh as a solid, in the official frame
    doc = GlbDocument.parse(glb)
    geometry = mesh_geometry(doc)
    official = geometry.vertices.astype(np.float64) @ Z_UP_TO_Y_UP  # y-up -> z-up (inverse of to_y_up)
    welded, welded_faces, _ = weld(official, geometry.faces)
    solid = SolidMesh(welded, welded_faces)
    lap("solid")

    # 3. skeleton
    skeleton = place_skeleton(pose, solid, front_view.width)
    lap("skeleton")

    # 4. weights
    segments, owners = skeleton.bones()
    skin = heat_weights(official, geometry.faces, segments, owners, solid.occupancy())
    lap("weights")

    # 5. clip and glTF skin
    positions = to_y_up(skeleton.positions)
    clip = wave_clip(skeleton.names, positions.astype(np.float64))
    add_skin(doc, geometry, skeleton.names, skeleton.parents, positions, skin.joints, skin.weights, clip)
    rigged = doc.to_bytes()
    lap("encode")
    return RiggedModel(glb=rigged, skeleton=skeleton, timings=timings)
