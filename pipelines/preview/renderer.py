"""Orthographic geometry buffers of a mesh, rendered on the CPU with OpenGL.

The five stage-1 views are orthographic projections of the unit cube, stored
so that the image column grows with a world axis (spec section 4.1):

=====  ===========  ===============  ===========================
view   camera at    image column     surface seen (nearest)
=====  ===========  ===============  ===========================
0      -y (front)   +x               smallest y
1      +x (right)   +y               largest x
2      +y (back)    +x (mirrored)    largest y
3      -x (left)    +y (mirrored)    smallest x
4      -y (face)    +x, zoomed 3x    smallest y
=====  ===========  ===============  ===========================

Rows always run from z = top down to z = bottom.  So each stored view is a
plain axis-aligned projection: no mirroring needs to be applied afterwards.

Rendering uses moderngl on a headless EGL context (Mesa's llvmpipe on a
machine without a GPU).  Instead of colours it writes, per pixel, the world
position and the unit normal of the visible surface into float buffers; the
caller shades them (``appearance.py``), so rendered views and baked texture
share one colour function.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

from pipelines.opengl import PerThreadProgram

_VERTEX_SHADER = """
#version 330
uniform vec3 u_axis;
uniform vec3 v_axis;
uniform vec3 depth_axis;
uniform vec4 window;  // u0, u1, v0, v1
in vec3 in_position;
in vec3 in_normal;
out vec3 v_position;
out vec3 v_normal;
void main() {
    float u = dot(in_position, u_axis);
    float v = dot(in_position, v_axis);
    float d = dot(in_position, depth_axis);
    gl_Position = vec4(2.0 * (u - window.x) / (window.y - window.x) - 1.0,
                       2.0 * (v - window.z) / (window.w - window.z) - 1.0,
                       d, 1.0);
    v_position = in_position;
    v_normal = in_normal;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_position;
in vec3 v_normal;
layout(location = 0) out vec4 out_position;
layout(location = 1) out vec4 out_normal;
void main() {
    out_position = vec4(v_position, 1.0);
    out_normal = vec4(normalize(v_normal), 1.0);
}
"""


@dataclass(frozen=True)
class OrthoView:
    """An axis-aligned orthographic view: image column along ``u``, row up along ``v``."""

    u_axis: tuple[float, float, float]
    v_axis: tuple[float, float, float]
    depth_axis: tuple[float, float, float]
    """Points with smaller ``depth_axis . p`` are nearer the camera."""
    window: tuple[float, float, float, float] = (-0.5, 0.5, -0.5, 0.5)
    """(u0, u1, v0, v1): the world extent the image covers."""


X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
NEG_X, NEG_Y = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)

STAGE1_VIEWS = (
    OrthoView(u_axis=X, v_axis=Z, depth_axis=Y),  # 0 front
    OrthoView(u_axis=Y, v_axis=Z, depth_axis=NEG_X),  # 1 right
    OrthoView(u_axis=X, v_axis=Z, depth_axis=NEG_Y),  # 2 back, stored mirrored
    OrthoView(u_axis=Y, v_axis=Z, depth_axis=X),  # 3 left, stored mirrored
    OrthoView(u_axis=X, v_axis=Z, depth_axis=Y, window=(-1 / 6, 1 / 6, 1 / 6, 0.5)),  # 4 face
)
"""The five stage-1 views; the face window is the canvas box x in [256, 512), y in [0, 256)."""


@dataclass
class GeometryBuffers:
    """What one view sees, per pixel (row 0 at the top)."""

    position: np.ndarray
    """(H, W, 3) float32 world position of the visible surface (0 where empty)."""
    normal: np.ndarray
    """(H, W, 3) float32 unit world normal (0 where empty)."""
    mask: np.ndarray
    """(H, W) bool: a surface covers the pixel."""


class OrthoRenderer:
    """Renders geometry buffers of a mesh; one OpenGL context per thread, made on first use."""

    def __init__(self) -> None:
        self._gl = PerThreadProgram(_VERTEX_SHADER, _FRAGMENT_SHADER)

    def render(
        self,
        vertices: np.ndarray,
        normals: np.ndarray,
        faces: np.ndarray,
        views: tuple[OrthoView, ...],
        size: int,
    ) -> list[GeometryBuffers]:
        """Geometry buffers of ``size`` x ``size`` pixels for each view."""
        ctx, program = self._gl.get()
        interleaved = np.concatenate([vertices, normals], axis=1).astype("f4")  # (V, 6)
        vbo = ctx.buffer(interleaved.tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(faces, dtype="i4").tobytes())
        vao = ctx.vertex_array(program, [(vbo, "3f 3f", "in_position", "in_normal")], index_buffer=ibo)
        targets = [ctx.texture((size, size), 4, dtype="f4") for _ in range(2)]
        depth = ctx.depth_renderbuffer((size, size))
        fbo = ctx.framebuffer(color_attachments=targets, depth_attachment=depth)
        out = []
        try:
            fbo.use()
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            for view in views:
                program["u_axis"].value = view.u_axis
                program["v_axis"].value = view.v_axis
                program["depth_axis"].value = view.depth_axis
                program["window"].value = view.window
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                vao.render(moderngl.TRIANGLES)
                buffers = []
                for attachment in range(2):
                    raw = fbo.read(components=4, attachment=attachment, dtype="f4")
                    # (H, W, 4) with the top row first (OpenGL reads bottom-up)
                    image = np.frombuffer(raw, dtype=np.float32).reshape(size, size, 4)[::-1]
                    buffers.append(image)
                position, normal = buffers
                out.append(
                    GeometryBuffers(
                        position=np.ascontiguousarray(position[..., :3]),
                        normal=np.ascontiguousarray(normal[..., :3]),
                        mask=normal[..., 3] > 0.5,
                    )
                )
        finally:
            for resource in (vao, vbo, ibo, fbo, depth, *targets):
                resource.release()
        return out
