"""SyncHuman stage-1 modules against the reference goldens (tiny random weights, float32, CPU).

Each test loads one component from the official-layout checkpoints in
``../shared/parity/synchuman/onestage/ckpt`` and compares with what the
reference implementation computed; tolerances are MANIFEST.md's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPVisionModelWithProjection

from pipelines.synchuman.conditioning import trellis_image
from pipelines.synchuman.stage1.denoiser import CrossSpaceDenoiser
from pipelines.synchuman.stage1.pipeline import CLIPImageProcessor
from pipelines.synchuman.stage1.structure_decoder import StructureDecoder, occupied_coords

pytestmark = pytest.mark.parity

MODULE_TOL = 1e-4  # max|a-b| <= 1e-4 * max(1, max|ref|)
FP16_INTER_TOL = 2e-3  # intermediates stored as float16: max|a-b| <= 2e-3 * max|ref|


def max_error(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> float:
    """Max abs error (printed with the relative one, for the record)."""
    error = (actual.float() - expected.float()).abs().max().item()
    print(f"{name}: max abs {error:.2e}, max rel {error / max(expected.float().abs().max().item(), 1e-30):.2e}")
    return error


def assert_module_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    assert actual.shape == expected.shape
    bound = MODULE_TOL * max(1.0, expected.float().abs().max().item())
    assert max_error(actual, expected, name) <= bound


@pytest.fixture(scope="module")
def onestage(parity_dir):
    return parity_dir / "onestage"


def test_cross_space_forward_matches_reference(onestage):
    model = CrossSpaceDenoiser.from_pretrained(onestage / "ckpt/SyncHuman_2D3DCrossSpaceDiffusion")
    golden = load_file(onestage / "golden/unet_forward.safetensors")
    captured: dict[str, torch.Tensor] = {}

    def capture(name):
        return lambda module, inputs, output: captured.__setitem__(name, output)

    for i in range(2):
        model.dual_CrossAttblocks_SS[i].register_forward_hook(capture(f"inter.dual_SS_{i}.out"))
        model.dual_CrossAttblocks_MV[i].register_forward_hook(capture(f"inter.dual_MV_{i}.out"))
    model.time_embedding.register_forward_hook(capture("inter.time_embedding.out"))
    model.class_embedding.register_forward_hook(capture("inter.class_embedding.out"))
    model.t_embedder.register_forward_hook(capture("inter.trellis_t_embedder.out"))
    with torch.no_grad():
        v_2d, v_3d = model(
            golden["in.sample"],
            golden["in.timestep"].item(),
            golden["in.encoder_hidden_states"],
            golden["in.class_labels"],
            golden["in.trellis_x"],
            golden["in.trellis_t"],
            golden["in.trellis_cond"],
        )
    assert_module_close(v_2d, golden["out.v_2d"], "out.v_2d")
    assert_module_close(v_3d, golden["out.v_trellis"], "out.v_trellis")
    for name in ("inter.time_embedding.out", "inter.class_embedding.out", "inter.trellis_t_embedder.out"):
        assert_module_close(captured[name], golden[name], name)
    for name in [f"inter.dual_{kind}_{i}.out" for kind in ("SS", "MV") for i in range(2)]:
        expected = golden[name].float()
        assert captured[name].shape == expected.shape
        assert max_error(captured[name], expected, name) <= FP16_INTER_TOL * expected.abs().max().item(), name


def test_cross_space_config_reads_tiny_sizes(onestage):
    model = CrossSpaceDenoiser.from_pretrained(onestage / "ckpt/SyncHuman_2D3DCrossSpaceDiffusion")
    config = model.config
    assert config.block_out_channels == (32, 64, 64)
    assert (config.model_channels, config.num_heads, config.num_blocks) == (32, 2, 24)
    assert config.sync.image_to_voxel_mv_dims == (32, 64)
    assert (config.sync.structure_dim, config.sync.heads, config.sync.dim_head) == (32, 2, 16)


def test_structure_decoder_matches_reference(onestage):
    decoder = StructureDecoder.from_pretrained(onestage / "ckpt/sparse_structure_decoder")
    golden = load_file(onestage / "golden/ss_decoder.safetensors")
    with torch.no_grad():
        logits = decoder(golden["in.z"])
    assert_module_close(logits, golden["out.logits"], "ss_decoder.logits")
    assert torch.equal(occupied_coords(logits), golden["out.coords"])


def test_vae_matches_reference(onestage):
    vae = AutoencoderKL.from_pretrained(onestage / "ckpt/vae", local_files_only=True).eval()
    golden = load_file(onestage / "golden/vae.safetensors")
    scaling = vae.config.scaling_factor
    with torch.no_grad():
        posterior = vae.encode(golden["in.image_m11"]).latent_dist
        decoded = vae.decode(golden["in.decode_latent_scaled"] / scaling).sample
    assert_module_close(posterior.mean, golden["out.latent_mean"], "vae.latent_mean")
    assert_module_close(posterior.logvar, golden["out.latent_logvar"], "vae.latent_logvar")
    assert_module_close(posterior.mode() * scaling, golden["out.latent_mode_scaled"], "vae.latent_mode_scaled")
    assert_module_close(decoded, golden["out.decoded"], "vae.decoded")


def test_clip_image_embeds_match_reference(onestage):
    processor = CLIPImageProcessor.from_pretrained(onestage / "ckpt/feature_extractor", local_files_only=True)
    encoder = CLIPVisionModelWithProjection.from_pretrained(onestage / "ckpt/image_encoder", local_files_only=True)
    golden = load_file(onestage / "golden/clip.safetensors")
    images = [Image.fromarray(golden[f"in.pil_uint8_{i}"].numpy()) for i in range(2)]
    pixel_values = processor(images=images, return_tensors="pt").pixel_values
    assert_module_close(pixel_values, golden["out.pixel_values"], "clip.pixel_values")
    with torch.no_grad():
        embeds = encoder.eval()(pixel_values).image_embeds
    assert_module_close(embeds, golden["out.image_embeds"], "clip.image_embeds")


def test_trellis_crop_is_pixel_identical(onestage):
    ours = np.asarray(trellis_image(Image.open(onestage / "input.png")))
    reference = np.asarray(Image.open(onestage / "golden/trellis_preprocessed_518.png").convert("RGB"))
    assert ours.shape == (518, 518, 3)
    assert np.array_equal(ours, reference)
