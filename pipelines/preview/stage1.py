"""Stage 1 of the preview method: five views, normal maps and occupancy of an inflated body.

Numbered steps, each reported through ``callback("stage1", step, 5)``:

1. **segment**: :func:`pipelines.person.cutout.ensure_cutout` (an RGBA
   cut-out is kept, an opaque photo is cut out; the worker hands over cut-outs);
2. **preprocess**: :func:`pipelines.preprocess.multiview_inputs`, exactly the
   official crop / scale / centre and face box;
3. **pose**: :func:`pipelines.person.estimate_pose` on the canvas gives the
   skeleton (``skeleton.py``); without MediaPipe, or without a visible torso,
   the body is inflated from the silhouette alone;
4. **inflate**: the silhouette and skeleton become a closed body
   (``inflation.py``) and the 64^3 occupancy is read off it;
5. **render**: the body is rendered in the five official orthographic views;
   colours come from ``appearance.py`` (the front colour view is the input on
   white, as the official stage 1 overrides it), normal maps are the world
   normals encoded as n * 0.5 + 0.5 on white.

Nothing is random (the colour clustering of ``back.py`` is seeded):
``generator``, ``num_inference_steps`` and ``guidance_scale`` are accepted for
interface compatibility and ignored, so the result is the same for every seed.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.base import VIEW_SIZE, MultiviewOutput, PipelineInputError, ProgressCallback
from pipelines.person import estimate_pose
from pipelines.person.cutout import ensure_cutout
from pipelines.preprocess import multiview_inputs, on_white
from pipelines.preview.appearance import Appearance, build_appearance
from pipelines.preview.config import PreviewConfig
from pipelines.preview.inflation import BodyShape, body_mesh, body_shape, occupancy_coords
from pipelines.preview.renderer import STAGE1_VIEWS, GeometryBuffers, OrthoRenderer
from pipelines.preview.skeleton import Skeleton, skeleton_from_pose

STAGE = "stage1"
NUM_STEPS = 5


class PreviewMultiviewPipeline:
    """Photo of a person -> :class:`MultiviewOutput`, on the CPU in about a second."""

    def __init__(self, config: PreviewConfig | None = None, renderer: OrthoRenderer | None = None) -> None:
        self.config = config or PreviewConfig()
        self.renderer = renderer or OrthoRenderer()

    @classmethod
    def from_pretrained(cls, weights_dir: Any = None, *, device: str = "cpu", dtype: Any = None):
        """The preview method has no weights; the arguments exist for interface parity."""
        if device != "cpu":
            raise ValueError("the preview pipeline runs on the CPU only")
        return cls()

    def check_inputs(self, image: Any) -> None:
        if not isinstance(image, Image.Image):
            raise PipelineInputError("invalid_image", "stage 1 needs a PIL image")
        if image.width < 2 or image.height < 2:
            raise PipelineInputError("invalid_image", "the image is empty")

    def __call__(
        self,
        image: Image.Image,
        *,
        generator: Any = None,
        callback: ProgressCallback | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
    ) -> MultiviewOutput:
        self.check_inputs(image)
        timings: dict[str, float] = {}
        clock = _Clock(timings, callback)

        # 1. segment
        rgba = ensure_cutout(image)
        clock.step("segment", 1)

        # 2. preprocess (official crop, scale, centre; face box)
        inputs = multiview_inputs(rgba)
        canvas = np.asarray(inputs.body)  # (768, 768, 4) uint8
        clock.step("preprocess", 2)

        # 3. the person's pose on the canvas
        skeleton = canvas_skeleton(canvas, self.config)
        clock.step("pose", 3)

        # 4. inflate the silhouette into a closed body; occupancy
        shape = body_shape(canvas[..., 3], self.config.inflation, skeleton)
        mesh, normals = body_mesh(shape, self.config.inflation)
        coords = occupancy_coords(shape)
        appearance = build_appearance(canvas, self.config.appearance, skeleton)
        clock.step("inflate", 4)

        # 5. render the five views
        scale = self.config.supersampling
        buffers = self.renderer.render(mesh.vertices, normals, mesh.faces, STAGE1_VIEWS, VIEW_SIZE * scale)
        colors = [_to_image(on_white(inputs.body))]
        colors += [_shade(b, appearance, scale) for b in buffers[1:4]]
        colors.append(_to_image(on_white(inputs.face)))
        normal_maps = [_normal_map(b, scale) for b in buffers]
        clock.step("render", 5)

        return MultiviewOutput(
            source=rgba,
            input_image=inputs.body,
            colors=colors,
            normals=normal_maps,
            coords=coords,
            timings=timings,
            extras={
                "method": "preview",
                "skeleton": skeleton,
                "shape": shape,
                "appearance": appearance,
                "mesh": mesh,
                "vertex_normals": normals,
            },
        )


def body_from_views(views: MultiviewOutput, config: PreviewConfig) -> tuple[BodyShape, Appearance]:
    """The body and its colours from a stage-1 output (reused, or rebuilt from ``input_image``)."""
    shape = views.extras.get("shape")
    appearance = views.extras.get("appearance")
    if shape is None or appearance is None:
        canvas = np.asarray(views.input_image.convert("RGBA"))
        skeleton = canvas_skeleton(canvas, config)
        shape = body_shape(canvas[..., 3], config.inflation, skeleton)
        appearance = build_appearance(canvas, config.appearance, skeleton)
    return shape, appearance


def canvas_skeleton(canvas: np.ndarray, config: PreviewConfig) -> Skeleton | None:
    """The skeleton of the person on the (S, S, 4) uint8 canvas; None without MediaPipe, without
    a person found, or without a visible torso."""
    rgb = np.round(on_white(Image.fromarray(canvas)) * 255.0).astype(np.uint8)
    try:
        pose = estimate_pose(rgb)
    except ImportError:
        return None
    if pose is None:
        return None
    return skeleton_from_pose(pose, canvas[..., 3] > 0, config.skeleton)


def _shade(buffers: GeometryBuffers, appearance: Appearance, scale: int) -> Image.Image:
    """Colour view on white from geometry buffers, averaged down by ``scale``."""
    rgb = appearance.colors(buffers.position, buffers.normal)  # (H, W, 3)
    return _composite(rgb, buffers.mask, scale)


def _normal_map(buffers: GeometryBuffers, scale: int) -> Image.Image:
    return _composite(buffers.normal * 0.5 + 0.5, buffers.mask, scale)


def _composite(rgb: np.ndarray, mask: np.ndarray, scale: int) -> Image.Image:
    """Put a rendered view on white; with ``scale`` > 1 the buffers were rendered
    larger and coverage-weighted colours are averaged over ``scale`` x ``scale``
    blocks (anti-aliasing).  At ``scale`` 1 edges are hard, pixel-exact."""
    alpha = mask.astype(np.float32)[..., None]  # (H, W, 1)
    if scale == 1:
        return _to_image(rgb * alpha + (1.0 - alpha))
    premultiplied = np.concatenate([rgb.astype(np.float32) * alpha, alpha], axis=-1)  # (H, W, 4)
    size = rgb.shape[0] // scale
    premultiplied = cv2.resize(premultiplied, (size, size), interpolation=cv2.INTER_AREA)
    color, coverage = premultiplied[..., :3], premultiplied[..., 3:]
    return _to_image(color + (1.0 - coverage))


def _to_image(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")


class _Clock:
    """Records each step's duration and reports progress (the callback may raise to cancel)."""

    def __init__(self, timings: dict[str, float], callback: ProgressCallback | None) -> None:
        self.timings = timings
        self.callback = callback
        self.last = time.perf_counter()

    def step(self, name: str, index: int) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.last
        self.last = now
        if self.callback is not None:
            self.callback(STAGE, index, NUM_STEPS)
