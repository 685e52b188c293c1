"""Lit, textured renders of the finished model, on the CPU (or a GPU) with OpenGL.

The thumbnail and the turntable are the same picture from different angles:
the model seen by a perspective camera that orbits its centre about the up
axis (y), under lights fixed to the camera (a key light from the upper left,
a softer fill from the right, ambient), on a transparent background.  Shading
is done in linear light on the sRGB base colour; edges are anti-aliased with
4x multisampling.

Rendering uses moderngl on a headless EGL context: Mesa's llvmpipe on a
machine without a GPU, the GPU's driver where there is one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import moderngl
import numpy as np

from pipelines.opengl import PerThreadProgram

from pipelines.outputs.model import TexturedModel

FIELD_OF_VIEW_DEGREES = 30.0
"""Vertical (and horizontal: frames are square) field of view."""
MARGIN = 1.08
"""The model fills at most 1 / MARGIN of the frame's height, whatever the angle."""
EDGE_SAMPLES = 4
"""Multisampling of the edges, for stills (a video's motion hides the stair-steps; it renders with none)."""

_VERTEX_SHADER = """
#version 330
uniform mat4 view_projection;
uniform mat3 view_rotation;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    gl_Position = view_projection * vec4(in_position, 1.0);
    v_normal = view_rotation * in_normal;
    v_uv = in_uv;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D base_color;
in vec3 v_normal;
in vec2 v_uv;
out vec4 out_color;
// Camera space: x right, y up, the camera looks down -z.
const vec3 KEY = normalize(vec3(-0.5, 0.6, 0.75));
const vec3 FILL = normalize(vec3(0.7, 0.1, 0.6));
void main() {
    vec3 albedo = pow(texture(base_color, v_uv).rgb, vec3(2.2));
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    float light = 0.35 + 0.75 * max(dot(n, KEY), 0.0) + 0.3 * max(dot(n, FILL), 0.0);
    out_color = vec4(pow(clamp(albedo * light, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""


@dataclass(frozen=True)
class OrbitView:
    """Where the camera stands around the model, in degrees."""

    azimuth: float
    """About the up axis: 0 in front of the subject (on +z), 90 on its left (+x)."""
    elevation: float = 0.0
    """Above the horizontal plane through the model's centre."""


FRONT_THREE_QUARTER = OrbitView(azimuth=35.0, elevation=12.0)
"""The thumbnail's view."""


@dataclass(frozen=True)
class Framing:
    """A perspective camera that keeps the whole model in frame from every orbit angle."""

    target: tuple[float, float, float]
    """The point the camera looks at: the centre of the model's box."""
    distance: float
    """From the camera to ``target``."""
    fov_degrees: float = FIELD_OF_VIEW_DEGREES

    @classmethod
    def around(cls, model: TexturedModel) -> Framing:
        """Fits the model's box: its height and its widest horizontal reach from the centre."""
        low, high = model.bounds
        centre = (low + high) / 2.0
        reach = float(np.linalg.norm(model.vertices[:, [0, 2]] - centre[[0, 2]], axis=1).max())
        half = max(float(high[1] - low[1]) / 2.0, reach) * MARGIN
        # The nearest point is ``reach`` closer than the target; it must still fit the frame.
        distance = reach + half / math.tan(math.radians(FIELD_OF_VIEW_DEGREES) / 2.0)
        return cls(target=tuple(float(c) for c in centre), distance=distance)

    def eye(self, view: OrbitView) -> np.ndarray:
        """(3,) float64 camera position."""
        azimuth, elevation = math.radians(view.azimuth), math.radians(view.elevation)
        direction = np.array(
            [math.sin(azimuth) * math.cos(elevation), math.sin(elevation), math.cos(azimuth) * math.cos(elevation)]
        )
        return np.asarray(self.target) + self.distance * direction

    def view_matrix(self, view: OrbitView) -> np.ndarray:
        """(4, 4) float64 world -> camera (x right, y up, looking down -z)."""
        eye = self.eye(view)
        backward = eye - np.asarray(self.target)
        backward /= np.linalg.norm(backward)
        right = np.cross([0.0, 1.0, 0.0], backward)
        right /= np.linalg.norm(right)
        up = np.cross(backward, right)
        matrix = np.eye(4)
        matrix[:3, :3] = np.stack([right, up, backward])
        matrix[:3, 3] = -matrix[:3, :3] @ eye
        return matrix

    def projection_matrix(self) -> np.ndarray:
        """(4, 4) float64 camera -> clip space, OpenGL's convention, square frame."""
        near, far = self.distance * 0.1, self.distance * 4.0
        focal = 1.0 / math.tan(math.radians(self.fov_degrees) / 2.0)
        return np.array(
            [
                [focal, 0.0, 0.0, 0.0],
                [0.0, focal, 0.0, 0.0],
                [0.0, 0.0, (far + near) / (near - far), 2.0 * far * near / (near - far)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )


def turntable_views(count: int, elevation: float = 8.0) -> list[OrbitView]:
    """``count`` views a full turn about the up axis, starting in front of the subject."""
    return [OrbitView(azimuth=360.0 * i / count, elevation=elevation) for i in range(count)]


class ModelRenderer:
    """Renders a textured model; one OpenGL context per thread, made on first use."""

    def __init__(self) -> None:
        self._gl = PerThreadProgram(_VERTEX_SHADER, _FRAGMENT_SHADER)

    def render(
        self,
        model: TexturedModel,
        views: list[OrbitView],
        size: int,
        *,
        samples: int = EDGE_SAMPLES,
        background: tuple[int, int, int] = (0, 0, 0),
    ) -> Iterator[np.ndarray]:
        """Yields one (size, size, 4) uint8 RGBA frame per view, row 0 at the top.

        RGB is the model composited over ``background``; alpha is the pixel's
        coverage (of ``samples`` samples per pixel; 0 or 255 with none).  Over
        the default black, RGB is thus premultiplied by alpha.  Frames are
        rendered one at a time, as they are asked for.
        """
        ctx, program = self._gl.get()
        framing = Framing.around(model)
        interleaved = np.concatenate([model.vertices, model.normals, model.uvs], axis=1).astype("f4")  # (V, 8)
        vbo = ctx.buffer(interleaved.tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(model.faces, dtype="i4").tobytes())
        vao = ctx.vertex_array(program, [(vbo, "3f 3f 2f", "in_position", "in_normal", "in_uv")], index_buffer=ibo)
        # OpenGL's first texture row is v = 0, the image's bottom row.
        texels = np.ascontiguousarray(np.asarray(model.texture.convert("RGB"))[::-1])
        texture = ctx.texture(model.texture.size, 3, texels.tobytes())
        texture.build_mipmaps()
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        # Drawn into ``target`` (multisampled or not), read from ``readable``.
        owned = [vao, vbo, ibo, texture]
        color = ctx.renderbuffer((size, size), 4, samples=samples)
        depth = ctx.depth_renderbuffer((size, size), samples=samples)
        target = readable = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
        owned += [color, depth, target]
        if samples:
            resolved_color = ctx.renderbuffer((size, size), 4)
            readable = ctx.framebuffer(color_attachments=[resolved_color])
            owned += [resolved_color, readable]
        clear = [c / 255.0 for c in background]
        # OpenGL's row 0 is the bottom one: flipping y in clip space makes the read
        # buffer top row first (and turns counter-clockwise faces clockwise).
        projection = np.diag([1.0, -1.0, 1.0, 1.0]) @ framing.projection_matrix()
        try:
            texture.use(0)
            program["base_color"].value = 0
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.disable(moderngl.CULL_FACE)
            ctx.front_face = "cw"
            for view in views:
                view_matrix = framing.view_matrix(view)
                # OpenGL reads matrices column by column: upload the transposes.
                program["view_projection"].write((projection @ view_matrix).T.astype("f4").tobytes())
                program["view_rotation"].write(view_matrix[:3, :3].T.astype("f4").tobytes())
                target.use()
                target.clear(*clear, 0.0, depth=1.0)
                vao.render(moderngl.TRIANGLES)
                if samples:
                    ctx.copy_framebuffer(readable, target)
                raw = readable.read(components=4, dtype="f1")
                yield np.frombuffer(raw, dtype=np.uint8).reshape(size, size, 4)
        finally:
            ctx.front_face = "ccw"
            for resource in owned:
                resource.release()
