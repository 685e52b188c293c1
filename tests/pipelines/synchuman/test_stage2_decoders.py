"""Multiview features, the Gaussian decoder and the mesh decoder against the reference goldens.

Mesh rule (MANIFEST): the raw FlexiCubes input within the module tolerance;
then, the nearest sdf value being far from zero compared with that error
(``mesh.raw_out_sdf_abs_min`` = 3e-5 against ~4e-6), identical topology:
vertex and face counts, faces exactly, vertices to 1e-5.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from pipelines.synchuman.dinov2 import DinoV2
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.checkpoint import build_and_load, read_model_config
from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig
from pipelines.synchuman.stage2.gaussian_decoder import SLatGaussianDecoder
from pipelines.synchuman.stage2.mesh_decoder import SLatMeshDecoder
from pipelines.synchuman.stage2.mesh_extraction import extract_mesh
from pipelines.synchuman.stage2.mv_features import multiview_features

pytestmark = pytest.mark.parity


def _dense_maps(g: dict, prefix: str) -> torch.Tensor:
    """Rebuild a [1, 4, 64, 64, 128] map from its stored non-zero pixels."""
    dense = torch.zeros(1, 4, 64, 64, g[f"{prefix}.val"].shape[1])
    idx = g[f"{prefix}.idx"].long()
    dense[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]] = g[f"{prefix}.val"]
    return dense


@pytest.fixture(scope="module")
def goldens(parity_dir):
    return load_file(str(parity_dir / "secondstage" / "golden" / "decoders.safetensors"))


def _decoder(parity_dir, name, kind):
    folder = parity_dir / "secondstage" / "ckpt" / name
    config = DecoderConfig.from_args(read_model_config(folder)[1])
    return build_and_load(kind, config, folder, torch.device("cpu")).eval()


@torch.no_grad()
def test_gaussian_decoder_matches_reference(parity_dir, goldens):
    g = goldens
    decoder = _decoder(parity_dir, "slat_decoder_gs", SLatGaussianDecoder)
    slat = SparseVoxels(g["in.coords"], g["in.slat_feats"])
    img, normal = _dense_maps(g, "in.mv_img_features"), _dense_maps(g, "in.mv_normal_features")
    raw = decoder.raw_output(slat, img, normal)
    ref = g["gs.raw_out_feats"]
    assert (raw - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())
    params = decoder.to_params(slat, raw)
    for name in ("_xyz", "_features_dc", "_scaling", "_rotation", "_opacity", "get_xyz", "get_scaling", "get_rotation", "get_opacity"):
        ref = g[f"gs.{name}"]
        got = getattr(params, name)
        assert got.shape == ref.shape, name
        assert (got - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item()), name


@torch.no_grad()
def test_mesh_decoder_matches_reference(parity_dir, goldens):
    g = goldens
    stats = json.loads((parity_dir / "secondstage" / "golden" / "decoders.json").read_text())["mesh.raw_out_feats_stats"]
    decoder = _decoder(parity_dir, "slat_decoder_mesh", SLatMeshDecoder)
    slat = SparseVoxels(g["in.coords"], g["in.slat_feats"])
    img, normal = _dense_maps(g, "in.mv_img_features"), _dense_maps(g, "in.mv_normal_features")
    fine = decoder.raw_output(slat, img, normal)
    assert torch.equal(fine.coords, g["mesh.raw_out_coords"])
    ref = g["mesh.raw_out_feats_first1024"]
    assert (fine.feats[:1024] - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())
    full = fine.feats.double()
    assert abs(full.sum().item() - stats["sum"]) <= 1e-5 * stats["sum_sq"] ** 0.5 * full.shape[0] ** 0.5
    assert full.min().item() == pytest.approx(stats["min"], abs=1e-4) and full.max().item() == pytest.approx(stats["max"], abs=1e-4)

    mesh = extract_mesh(fine.coords[:, 1:], fine.feats, resolution=256, use_color=True)
    assert mesh.vertices.shape == g["mesh.vertices"].shape
    assert torch.equal(mesh.faces, g["mesh.faces"].long())
    assert (mesh.vertices - g["mesh.vertices"]).abs().max() <= 1e-5
    assert (mesh.vertex_attrs - g["mesh.vertex_attrs"]).abs().max() <= 1e-4


@torch.no_grad()
def test_multiview_features_match_reference(parity_dir):
    dinov2 = DinoV2.from_pretrained(parity_dir / "onestage" / "dinov2" / "dinov2_vitl14_reg4_tiny.pth")
    g = load_file(str(parity_dir / "secondstage" / "golden" / "mv_features.safetensors"))
    features = multiview_features(dinov2, g["in.mv_images"])
    assert features.shape == (1, 4, 64, 64, 128)
    for got, ref in ((features[:, :, ::4, ::4], g["out.features_stride4"]), (features[:, :, 0], g["out.features_row0"])):
        assert (got - ref).abs().max() <= 2e-3 * ref.abs().max()
