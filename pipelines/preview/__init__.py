"""The preview method: a photo-to-3D reconstruction from the silhouette, on the CPU in seconds.

This is **not** SyncHuman.  It needs no weights and no GPU, and is the embedded
default for demos, CI, laptops and load tests.  It goes through the same
two-stage interface and writes the same artifacts as the SyncHuman pipelines:

* **stage 1** (``stage1.py``) cuts the person out if the photo is opaque
  (``pipelines/person/cutout.py``), preprocesses it exactly as the official
  model does, finds the person's pose (``pipelines/person``, MediaPipe Pose)
  and turns it into a skeleton in the official frame (``skeleton.py``),
  inflates the silhouette into one closed body whose torso and limbs have
  their own depth and thickness (``inflation.py``, meshed by marching cubes),
  reads the 64^3 occupancy off that body, and renders the five official
  orthographic views and their world-space normal maps (``renderer.py``,
  OpenGL on the CPU).  The front colour view is the photo; sides and back are
  coloured by ``appearance.py`` (photo on the front; on the back the photo
  without prints, hands, arms across the body or face, ``back.py``).
* **stage 2** (``stage2.py``) simplifies that body, unwraps it with xatlas,
  bakes a texture by projecting the same colours, and exports GLB and PLY
  with ``pipelines/export``.

The body is plausible, not faithful: its depth is guessed from the outline
and a single photo's pose, and the back's appearance is invented.
"""

from __future__ import annotations

from pipelines.base import GenerationPipelines
from pipelines.preview.config import PREVIEW_VERSION, PreviewConfig
from pipelines.preview.stage1 import PreviewMultiviewPipeline
from pipelines.preview.stage2 import PreviewMeshPipeline

DESCRIPTION = (
    "Preview method (not SyncHuman): a CPU reconstruction that inflates the person's silhouette "
    "into a closed body posed by a 2D pose estimate and textures it by projecting the photo; "
    "depth and back are guessed."
)

__all__ = ["DESCRIPTION", "PreviewConfig", "PreviewMeshPipeline", "PreviewMultiviewPipeline", "load_preview"]


def load_preview(device: str = "cpu") -> GenerationPipelines:
    """Both stages of the preview method; it runs on the CPU whatever ``device`` asks for."""
    config = PreviewConfig()
    return GenerationPipelines(
        name="preview",
        version=PREVIEW_VERSION,
        description=DESCRIPTION,
        stage1=PreviewMultiviewPipeline(config),
        stage2=PreviewMeshPipeline(config),
        device="cpu",
    )
