"""The rig's parts on shapes whose answers are known: a sphere, a cylinder, a box."""

from __future__ import annotations

import io

import numpy as np
import trimesh

from pipelines.rig.glb import ARRAY_BUFFER, GlbDocument
from pipelines.rig.skin_weights import heat_weights, weld
from pipelines.rig.volume import SolidMesh


def test_solid_contains_agrees_with_a_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    solid = SolidMesh(sphere.vertices, sphere.faces)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (4000, 3))
    radius = np.linalg.norm(points, axis=1)
    clear = np.abs(radius - 0.4) > 0.01  # the tessellated surface lies within 1 % of the sphere
    assert np.array_equal(solid.contains(points)[clear], (radius < 0.4)[clear])
    grid = solid.occupancy(resolution=40)
    assert (grid.lookup(points)[clear] == (radius < 0.4)[clear]).mean() > 0.97


def test_rays_cross_two_boxes_in_two_intervals():
    near = trimesh.creation.box(extents=(0.2, 0.1, 0.2))
    near.apply_translation((0.0, -0.2, 0.0))
    far = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    far.apply_translation((0.0, 0.15, 0.0))
    both = trimesh.util.concatenate([near, far])
    (through, beside) = SolidMesh(both.vertices, both.faces).intervals(np.array([[0.01, 0.02], [0.5, 0.0]]))
    assert np.allclose(through, [[-0.25, -0.15], [0.05, 0.25]])
    assert beside.shape == (0, 2)
    assert np.isclose(SolidMesh(both.vertices, both.faces).half_width(np.array([[0.0, 0.0]]))[0], 0.1, atol=0.01)


def test_heat_weights_blend_two_bones_of_a_cylinder_smoothly():
    coarse = trimesh.creation.cylinder(radius=0.05, height=0.8, sections=32)
    cylinder = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(coarse.vertices, coarse.faces, max_edge=0.02))
    solid = SolidMesh(cylinder.vertices, cylinder.faces)
    bones = np.array([[[0, 0, -0.35], [0, 0, 0.0]], [[0, 0, 0.0], [0, 0, 0.35]]])  # joint 0 below, joint 1 above
    skin = heat_weights(cylinder.vertices, cylinder.faces, bones, np.array([0, 1]), solid.occupancy(resolution=64))
    weights = np.zeros((len(cylinder.vertices), 2))
    rows = np.repeat(np.arange(len(weights)), 4)
    np.add.at(weights, (rows, skin.joints.astype(np.int64).ravel()), skin.weights.ravel())
    assert np.allclose(skin.weights.sum(axis=1), 1.0, atol=1e-6)
    z = cylinder.vertices[:, 2]
    assert (weights[z < -0.2, 0] > 0.95).all() and (weights[z > 0.2, 1] > 0.95).all()
    middle = np.abs(z) < 0.01
    assert np.allclose(weights[middle, 1], 0.5, atol=0.15)
    order = np.argsort(z)
    upper = weights[order, 1]
    assert (np.diff(upper) > -0.05).all(), "the upper bone's weight grows along the cylinder"
    blended = (weights[:, 0] > 0.05) & (weights[:, 1] > 0.05)
    assert 0.02 < blended.mean() < 0.5 and np.abs(z[blended]).max() < 0.1  # a band around the joint


def test_weld_merges_seam_copies():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 2]])
    welded, welded_faces, source = weld(vertices, faces)
    assert len(welded) == 4 and source[1] == source[3]
    assert np.array_equal(welded[welded_faces], vertices[faces].astype(np.float64))


def test_glb_document_reads_and_appends_accessors():
    box = trimesh.creation.box()
    glb = trimesh.exchange.gltf.export_glb(trimesh.Scene(box))
    doc = GlbDocument.parse(glb)
    (primitive,) = doc.gltf["meshes"][0]["primitives"]
    assert np.allclose(doc.read_accessor(primitive["attributes"]["POSITION"]), box.vertices)
    extra = np.arange(len(box.vertices) * 4, dtype=np.uint16).reshape(-1, 4)
    index = doc.append_accessor(extra, "VEC4", target=ARRAY_BUFFER)
    again = GlbDocument.parse(doc.to_bytes())
    assert np.array_equal(again.read_accessor(index), extra)
    assert len(doc.to_bytes()) % 4 == 0
    scene = trimesh.load(io.BytesIO(again.to_bytes()), file_type="glb")
    assert np.allclose(next(iter(scene.geometry.values())).vertices, box.vertices)
