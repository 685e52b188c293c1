"""USDZ and OBJ of a model, chosen by the job's ``formats``: each checked by a reader of its own."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.support.output_checks import arkit_problems
from pipelines.base import PipelineInputError
from pipelines.outputs import model_outputs
from pipelines.outputs.model import load_glb
from shared.options import MODEL_FORMATS, GenerationOptions


@pytest.fixture(scope="module")
def outputs(figure_glb):
    return model_outputs(figure_glb, ["glb", "usdz", "obj"]).files


def test_usdz_passes_the_arkit_compliance_checker(outputs, tmp_path):
    path = tmp_path / "output.usdz"
    path.write_bytes(outputs["output.usdz"])
    assert arkit_problems(path) == []


def test_arkit_checker_catches_a_broken_package(outputs, tmp_path):
    """The check above can fail: a package whose texture is missing does not pass."""
    broken = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(outputs["output.usdz"])) as source, zipfile.ZipFile(broken, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(".png"):
                target.writestr(info, source.read(info))
    path = tmp_path / "broken.usdz"
    path.write_bytes(broken.getvalue())
    assert arkit_problems(path)


def test_usdz_stage_is_y_up_metres_with_a_textured_preview_surface(outputs, figure_glb, tmp_path):
    from pxr import Usd, UsdGeom, UsdShade

    path = tmp_path / "output.usdz"
    path.write_bytes(outputs["output.usdz"])
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    root = stage.GetDefaultPrim()
    assert root.GetPath() == "/Model" and Usd.ModelAPI(root).GetKind() == "component"
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/Model/Mesh"))
    points = np.asarray(mesh.GetPointsAttr().Get())
    model = load_glb(figure_glb)
    assert len(points) == len(model.vertices)
    assert points[:, 1].min() == pytest.approx(0.0, abs=1e-6), "the model stands on the floor"
    # Same size and shape as the GLB, only moved.
    np.testing.assert_allclose(np.ptp(points, axis=0), np.ptp(model.vertices, axis=0), atol=1e-5)
    np.testing.assert_allclose(points - points.mean(0), model.vertices - model.vertices.mean(0), atol=1e-5)

    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
    texture_source = surface.GetInput("diffuseColor").GetConnectedSources()[0][0].source
    texture = UsdShade.Shader(texture_source.GetPrim())
    assert texture.GetIdAttr().Get() == "UsdUVTexture"
    file_path = texture.GetInput("file").Get().path
    with zipfile.ZipFile(io.BytesIO(outputs["output.usdz"])) as package:
        assert package.namelist()[0].endswith(".usdc"), "the root layer comes first"
        assert all(info.compress_type == zipfile.ZIP_STORED for info in package.infolist())
        packed = Image.open(io.BytesIO(package.read(file_path.removeprefix("./"))))
    np.testing.assert_array_equal(np.asarray(packed.convert("RGB")), np.asarray(model.texture))


def test_obj_zip_loads_in_trimesh_with_its_texture(outputs, figure_glb, tmp_path):
    with zipfile.ZipFile(io.BytesIO(outputs["output_obj.zip"])) as archive:
        assert sorted(archive.namelist()) == ["base_color.png", "model.mtl", "model.obj"]
        archive.extractall(tmp_path)
    loaded = trimesh.load(tmp_path / "model.obj", process=False)
    model = load_glb(figure_glb)
    np.testing.assert_allclose(loaded.vertices, model.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, model.faces)
    assert isinstance(loaded.visual, trimesh.visual.TextureVisuals)
    np.testing.assert_allclose(loaded.visual.uv, model.uvs, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")), np.asarray(model.texture))


@pytest.mark.slow  # two whole output runs of the figure
def test_formats_choose_the_files(figure_glb):
    assert "output.usdz" not in model_outputs(figure_glb, ["glb"]).files
    only_obj = model_outputs(figure_glb, ["obj"]).files
    assert "output_obj.zip" in only_obj and "output.usdz" not in only_obj


def test_unknown_format_is_refused(figure_glb):
    with pytest.raises(ValueError, match="fbx"):
        model_outputs(figure_glb, ["fbx"])


def test_a_glb_without_texture_is_shown_plain_grey(tmp_path):
    untextured = trimesh.creation.box(extents=(0.4, 0.8, 0.3)).export(file_type="glb")
    files = model_outputs(untextured, ["usdz"]).files
    thumbnail = np.asarray(Image.open(io.BytesIO(files["thumbnail.png"])))
    lit = thumbnail[thumbnail[..., 3] == 255][:, :3].astype(int)
    assert len(lit) > 1000 and (np.ptp(lit, axis=1) <= 2).all(), "grey: no hue anywhere"
    path = tmp_path / "box.usdz"
    path.write_bytes(files["output.usdz"])
    assert arkit_problems(path) == []


def test_a_glb_without_triangles_is_refused_with_a_code():
    points = trimesh.Scene([trimesh.PointCloud(np.random.default_rng(0).random((10, 3)))]).export(file_type="glb")
    with pytest.raises(PipelineInputError) as caught:
        model_outputs(points)
    assert caught.value.code == "invalid_model"


def test_callback_sees_every_output_and_can_stop_the_run(figure_glb):
    calls = []
    model_outputs(figure_glb, ["usdz"], callback=lambda *call: calls.append(call))
    assert calls == [("outputs", step, 4) for step in range(1, 5)]

    class Stop(Exception):
        pass

    def stop(_stage, step, _total):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        model_outputs(figure_glb, callback=stop)


def test_the_formats_option_and_the_writers_agree():
    from pipelines.outputs import MODEL_FORMATS as WRITTEN

    assert MODEL_FORMATS == WRITTEN
    assert GenerationOptions().formats == ("glb",)
    assert GenerationOptions(formats=["obj", "usdz", "obj"]).formats == ("glb", "obj", "usdz")
    with pytest.raises(ValueError):
        GenerationOptions(formats=["fbx"])
