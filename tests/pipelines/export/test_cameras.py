"""Camera conventions of the stored stage-1 views (spec section 4.1)."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.export.cameras import canonical_cameras, sphere_cameras, sphere_directions


def _pixel(camera, point):
    xy, depth, _ = camera.project(torch.tensor([point], dtype=torch.float32))
    return xy[0].tolist(), depth[0].item()


def test_front_view_pixel_mapping():
    front = canonical_cameras(768)[0]
    # Pixel (r, c) <-> x = (c + 0.5)/768 - 0.5, z = 0.5 - (r + 0.5)/768.
    r, c = 100, 600
    (x, y), _ = _pixel(front, [(c + 0.5) / 768 - 0.5, 0.0, 0.5 - (r + 0.5) / 768])
    assert abs(x - (c + 0.5)) < 1e-3 and abs(y - (r + 0.5)) < 1e-3


def test_stored_views_columns_and_depths():
    front, right, back, left, face = canonical_cameras(64)
    # Columns grow with +x (views 0, 2 as stored) and +y (views 1, 3 as stored).
    for camera, axis in [(front, 0), (back, 0), (right, 1), (left, 1)]:
        step = [0.0, 0.0, 0.0]
        step[axis] = 0.1
        assert _pixel(camera, step)[0][0] > _pixel(camera, [0.0, 0.0, 0.0])[0][0]
    # Each camera is nearer to the side it shows.
    assert _pixel(front, [0, -0.3, 0])[1] < _pixel(front, [0, 0.3, 0])[1]
    assert _pixel(back, [0, 0.3, 0])[1] < _pixel(back, [0, -0.3, 0])[1]
    assert _pixel(right, [0.3, 0, 0])[1] < _pixel(right, [-0.3, 0, 0])[1]
    assert _pixel(left, [-0.3, 0, 0])[1] < _pixel(left, [0.3, 0, 0])[1]
    # The face close-up covers x in [-1/6, 1/6], z in [1/6, 1/2].
    (x0, y0), _ = _pixel(face, [-1 / 6, 0, 0.5])
    (x1, y1), _ = _pixel(face, [1 / 6, 0, 1 / 6])
    assert np.allclose([x0, y0, x1, y1], [0, 0, 64, 64], atol=1e-3)


def test_sphere_cameras_cover_the_sphere_and_see_the_subject():
    directions = sphere_directions(200)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-9)
    assert np.abs(directions.mean(axis=0)).max() < 0.05
    corners = torch.tensor([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    for camera in sphere_cameras(20, 128):
        xy, depth, w = camera.project(corners)
        assert (depth > 0).all() and torch.equal(depth, w)
    centre, _, _ = sphere_cameras(3, 128)[0].project(torch.zeros(1, 3))
    assert torch.allclose(centre, torch.tensor([[64.0, 64.0]]), atol=1e-4)
