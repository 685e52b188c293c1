"""DINOv2-with-registers against the reference goldens (tiny random ViT, float32, CPU).

Both uses are checked: the stage-1 TRELLIS conditioning (``x_prenorm`` + LayerNorm
without affine at 518) and the stage-2 intermediate layers at 896, which exercise
the antialiased bicubic resize of the positional embedding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from pipelines.synchuman.dinov2 import STAGE2_LAYERS, DinoV2, normalize_imagenet

pytestmark = pytest.mark.parity

# MANIFEST: the tiny random ViT is chaotic; 6e-4 relative from a thread count change alone.
DINO_REL_TOL = 2e-3


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rel: float, name: str = "") -> None:
    err = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    print(f"{name}: max abs {err:.2e}, max rel {err / scale:.2e}")
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel * scale:.3g}"


@pytest.fixture(scope="module")
def dinov2(parity_dir) -> DinoV2:
    return DinoV2.from_pretrained(parity_dir / "onestage/dinov2/dinov2_vitl14_reg4_tiny.pth")


def test_dinov2_sizes_come_from_the_weights(dinov2):
    config = dinov2.config
    assert (config.embed_dim, config.depth, config.num_heads) == (32, 24, 2)
    assert (config.img_size, config.patch_size, config.num_register_tokens) == (518, 14, 4)


def test_dinov2_trellis_condition_matches_reference(dinov2, parity_dir):
    golden = load_file(parity_dir / "onestage/golden/dinov2.safetensors")
    pixels = np.array(Image.open(parity_dir / "onestage/golden/dinov2_input_518.png").convert("RGB"))
    images = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255  # [1, 3, 518, 518]
    with torch.no_grad():
        features = dinov2.forward_features(normalize_imagenet(images))
        cond = dinov2.trellis_condition(normalize_imagenet(images))
    assert cond.shape == (1, 1374, 32)
    assert_close_rel(features["x_prenorm"], golden["out.x_prenorm"], DINO_REL_TOL, "dinov2.x_prenorm")
    assert_close_rel(features["x_norm_patchtokens"], golden["out.x_norm_patchtokens"], DINO_REL_TOL, "dinov2.x_norm_patchtokens")
    assert_close_rel(cond, golden["out.cond"], DINO_REL_TOL, "dinov2.cond")


def test_dinov2_stage2_intermediate_layers_match_reference(dinov2, parity_dir):
    golden = load_file(parity_dir / "secondstage/golden/mv_features.safetensors")
    views = golden["in.mv_images"][0]  # [4, 3, 48, 48] in [0, 1]
    views = F.interpolate(views, size=(896, 896), mode="bilinear", align_corners=False)
    with torch.no_grad():
        layers = dinov2.intermediate_layers(normalize_imagenet(views), STAGE2_LAYERS)
    assert [tuple(layer.shape) for layer in layers] == [(4, 64 * 64, 32)] * 4
    features = torch.cat(layers, dim=-1).reshape(1, 4, 64, 64, 4 * 32)  # [1, views, 64, 64, 4D]
    assert_close_rel(features[:, :, ::4, ::4], golden["out.features_stride4"], DINO_REL_TOL, "dinov2.features_stride4")
    assert_close_rel(features[:, :, 0], golden["out.features_row0"], DINO_REL_TOL, "dinov2.features_row0")


def test_dinov2_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "dinov2_vitl14_reg4_pretrain.pth"
    with pytest.raises(FileNotFoundError, match="dinov2_vitl14_reg4_pretrain.pth"):
        DinoV2.from_pretrained(missing)
