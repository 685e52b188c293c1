"""``output.usdz``: the model for AR Quick Look (iPhone, iPad, Vision Pro), written with Pixar's USD.

The package holds one USD layer and its texture::

    model.usdc                 the stage (binary crate)
    textures/base_color.png    the base-colour texture

The stage is y up with 1 unit = 1 metre (the GLB's frame and scale), its
default prim ``/Model`` is a component ``Xform`` that holds ``Mesh``, a
triangle mesh with vertex normals and ``primvars:st``, bound to
``Materials/Body``: a ``UsdPreviewSurface`` (non-metallic, roughness 1, as
the GLB's material) whose diffuse colour is a ``UsdUVTexture`` read through
a ``UsdPrimvarReader_float2``.  The model is moved up so that its lowest
point rests on y = 0 and centred over the origin horizontally: AR Quick Look
puts the origin on the floor.

``UsdUtils.CreateNewARKitUsdzPackage`` packs it (uncompressed, 64-byte
aligned, as the USDZ specification requires).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

from pipelines.outputs.model import TexturedModel

TEXTURE_PATH = "./textures/base_color.png"
"""Relative to the layer, written with ``./`` so packaging keeps it as it is."""


def usdz_bytes(model: TexturedModel) -> bytes:
    """The model as a USDZ package (bytes)."""
    with tempfile.TemporaryDirectory(prefix="usdz-") as folder:
        root = Path(folder)
        (root / "textures").mkdir()
        model.texture.save(root / TEXTURE_PATH, format="PNG")
        layer = root / "model.usdc"
        stage = Usd.Stage.CreateNew(str(layer))
        _author(stage, model)
        stage.GetRootLayer().Save()
        package = root / "output.usdz"
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(package)):
            raise RuntimeError("USD could not package the stage as USDZ")
        return package.read_bytes()


def standing_on_floor(vertices: np.ndarray) -> np.ndarray:
    """(V, 3) positions moved so the lowest point is at y = 0 and the box is centred on x = z = 0."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    offset = np.array([-(low[0] + high[0]) / 2.0, -low[1], -(low[2] + high[2]) / 2.0], dtype=np.float32)
    return (vertices + offset).astype(np.float32)


def _author(stage: Usd.Stage, model: TexturedModel) -> None:
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.meters)
    root = UsdGeom.Xform.Define(stage, "/Model")
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)

    points = standing_on_floor(model.vertices)
    mesh = UsdGeom.Mesh.Define(stage, "/Model/Mesh")
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(model.faces), 3, dtype=np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(model.faces.reshape(-1).astype(np.int32)))
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(model.normals.astype(np.float32)))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, points.min(0))), Gf.Vec3f(*map(float, points.max(0)))]))
    st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
    st.Set(Vt.Vec2fArray.FromNumpy(model.uvs.astype(np.float32)))

    material = UsdShade.Material.Define(stage, "/Model/Materials/Body")
    surface = UsdShade.Shader.Define(stage, "/Model/Materials/Body/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")

    reader = UsdShade.Shader.Define(stage, "/Model/Materials/Body/TexCoordReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)

    texture = UsdShade.Shader.Define(stage, "/Model/Materials/Body/BaseColorTexture")
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(TEXTURE_PATH)
    texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
    texture.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
    texture.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
    texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(texture.ConnectableAPI(), "rgb")

    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
