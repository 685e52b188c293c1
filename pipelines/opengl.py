"""Headless OpenGL for the CPU renderers: one context and compiled program per thread.

moderngl on an EGL context: Mesa's llvmpipe on a machine without a GPU, the
GPU's driver where there is one.  An OpenGL context belongs to the thread
that made it, so each thread that renders gets its own, made on first use and
kept for the life of the process (workers render job after job).
"""

from __future__ import annotations

import threading

import moderngl


class PerThreadProgram:
    """A standalone EGL context and one program built from the given shaders, per thread."""

    def __init__(self, vertex_shader: str, fragment_shader: str) -> None:
        self._shaders = (vertex_shader, fragment_shader)
        self._local = threading.local()

    def get(self) -> tuple[moderngl.Context, moderngl.Program]:
        state = getattr(self._local, "state", None)
        if state is None:
            ctx = moderngl.create_standalone_context(backend="egl")
            vertex_shader, fragment_shader = self._shaders
            state = (ctx, ctx.program(vertex_shader=vertex_shader, fragment_shader=fragment_shader))
            self._local.state = state
        return state
