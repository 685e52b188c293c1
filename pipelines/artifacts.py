"""Writes pipeline outputs in the artifact layout every client relies on.

One layout for every pipeline (and the one existing users of the synchronous
API unzip)::

    stage1/input.png            768x768 preprocessed input (RGBA)
    stage1/color_{0..4}.png     the five views, RGB on white
    stage1/normal_{0..4}.png    their normal maps
    stage1/latent.npz           'coords' (N, 4) float32 of the 64^3 occupancy
    stage1/voxel.ply            the occupied voxels as points (grid units)
    stage2/output.glb           the textured model
    stage2/output_mesh.ply      the mesh
    stage2/rigged.glb           the model skinned to a humanoid skeleton (only when rigging was asked for)
    results_metadata.json       which pipeline ran, parameters, timings

``results.zip`` packs exactly those entries.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.base import MeshOutput, MultiviewOutput

STAGE1_FILES = (
    ["input.png"]
    + [f"color_{i}.png" for i in range(5)]
    + [f"normal_{i}.png" for i in range(5)]
    + ["latent.npz", "voxel.ply"]
)
STAGE2_FILES = ["output.glb", "output_mesh.ply"]
RIGGED_FILE = "rigged.glb"
METADATA_FILE = "results_metadata.json"


def voxel_ply_bytes(coords: np.ndarray) -> bytes:
    """Binary PLY of the occupied voxel centres, in 64^3 grid units (x, y, z)."""
    xyz = np.ascontiguousarray(coords[:, 1:4], dtype=np.float32) + 0.5
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode("ascii")
    return header + xyz.astype("<f4").tobytes()


def stage1_files(out: MultiviewOutput) -> dict[str, bytes]:
    """The stage-1 files as name -> bytes (PNG, NPZ, PLY)."""
    files: dict[str, bytes] = {"input.png": _png(out.input_image)}
    for i, (color, normal) in enumerate(zip(out.colors, out.normals, strict=True)):
        files[f"color_{i}.png"] = _png(color.convert("RGB"))
        files[f"normal_{i}.png"] = _png(normal.convert("RGB"))
    buf = io.BytesIO()
    np.savez(buf, coords=np.asarray(out.coords, dtype=np.float32))
    files["latent.npz"] = buf.getvalue()
    files["voxel.ply"] = voxel_ply_bytes(np.asarray(out.coords))
    return files


def stage2_files(out: MeshOutput, rigged_glb: bytes | None = None) -> dict[str, bytes]:
    files = {"output.glb": out.glb, "output_mesh.ply": out.mesh_ply}
    if rigged_glb is not None:
        files[RIGGED_FILE] = rigged_glb
    return files


def write_stage1(out: MultiviewOutput, directory: Path) -> list[Path]:
    return _write_all(stage1_files(out), Path(directory))


def write_stage2(out: MeshOutput, directory: Path) -> list[Path]:
    return _write_all(stage2_files(out), Path(directory))


def results_zip(stage1: dict[str, bytes], stage2: dict[str, bytes], metadata: dict[str, Any]) -> bytes:
    """Pack stage1/, stage2/ and results_metadata.json into one zip (bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in stage1.items():
            zf.writestr(f"stage1/{name}", data)
        for name, data in stage2.items():
            zf.writestr(f"stage2/{name}", data)
        zf.writestr(METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True))
    return buf.getvalue()


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _write_all(files: dict[str, bytes], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths
