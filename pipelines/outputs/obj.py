"""``output_obj.zip``: the model as Wavefront OBJ, for pipelines that still take OBJ + MTL + texture.

The zip holds three files at its root::

    model.obj          positions, texture coordinates, normals, triangles
    model.mtl          one material whose diffuse map (map_Kd) is the texture
    base_color.png     the base-colour texture

The frame is the GLB's (y up, metres, front facing +z), which is what OBJ
importers assume (Blender's default is y up).
"""

from __future__ import annotations

import io
import zipfile

import trimesh

from pipelines.outputs.model import TexturedModel

OBJ_NAME = "model.obj"
MTL_NAME = "model.mtl"
TEXTURE_NAME = "base_color.png"


def obj_zip_bytes(model: TexturedModel) -> bytes:
    """The model as a zip of OBJ, MTL and PNG texture (bytes)."""
    material = trimesh.visual.material.SimpleMaterial(
        image=model.texture,
        diffuse=(255, 255, 255, 255),
        ambient=(255, 255, 255, 255),
        specular=(0, 0, 0, 255),  # matte, as the GLB (roughness 1)
        name="body",
    )
    mesh = trimesh.Trimesh(
        vertices=model.vertices,
        faces=model.faces,
        vertex_normals=model.normals,
        visual=trimesh.visual.TextureVisuals(uv=model.uvs, material=material),
        process=False,
    )
    text, files = trimesh.exchange.obj.export_obj(
        mesh, include_normals=True, include_texture=True, return_texture=True, mtl_name=MTL_NAME, header=None
    )
    # trimesh names the texture after the material: rename it and the MTL's reference to it.
    (texture_name,) = [name for name in files if name != MTL_NAME]
    mtl = files[MTL_NAME].decode("utf-8").replace(texture_name, TEXTURE_NAME)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(OBJ_NAME, text)
        archive.writestr(MTL_NAME, mtl)
        archive.writestr(TEXTURE_NAME, files[texture_name], compress_type=zipfile.ZIP_STORED)  # PNG is compressed
    return buf.getvalue()
