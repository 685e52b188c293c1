"""The whole SyncHuman stage-1 pipeline against the reference runs (tiny random weights, CPU).

``pipeline_run_model_3steps``: the official ``run_model`` for 3 steps with the
seed-43 noise; ``pipeline_run_50steps``: the official ``run()`` (50 steps, CFG 3,
post-processing).  Tolerances are MANIFEST.md's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pipelines.base import PipelineInputError
from pipelines.synchuman.stage1 import Stage1Noise, SyncHumanStage1Pipeline

pytestmark = pytest.mark.parity

SCALING = 0.18215


def max_error(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> float:
    """Max abs error (printed with the relative one, for the record)."""
    error = (actual.float() - expected.float()).abs().max().item()
    print(f"{name}: max abs {error:.2e}, max rel {error / max(expected.float().abs().max().item(), 1e-30):.2e}")
    return error


def scale_of(expected: torch.Tensor) -> float:
    return expected.float().abs().max().item()


@pytest.fixture(scope="module")
def onestage(parity_dir):
    return parity_dir / "onestage"


@pytest.fixture(scope="module")
def pipe(onestage) -> SyncHumanStage1Pipeline:
    return SyncHumanStage1Pipeline.from_pretrained(
        onestage / "ckpt", dinov2=onestage / "dinov2/dinov2_vitl14_reg4_tiny.pth"
    )


@pytest.fixture(scope="module")
def person(onestage) -> Image.Image:
    return Image.open(onestage / "input.png")


@pytest.fixture(scope="module")
def golden3(onestage):
    return load_file(onestage / "golden/pipeline_run_model_3steps.safetensors")


@pytest.fixture(scope="module")
def conditions(pipe, person):
    return pipe.encode_conditions(person)[0]


def test_noise_follows_the_official_draw_order(pipe, golden3):
    noise = pipe.draw_noise(torch.Generator().manual_seed(43))
    assert torch.equal(noise.multiview, golden3["rng.01"])
    assert torch.equal(noise.structure, golden3["rng.02"])


def test_conditions_match_reference(conditions, golden3):
    cond_rows = [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]  # the non-zero CFG rows, normal then colour
    prompt_rows = [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert torch.equal(conditions.prompt_embeds[prompt_rows].half(), golden3["enc.prompt_embeds_in_fp16"])
    expected = golden3["enc.image_embeds_cfg"]
    assert max_error(conditions.class_labels, expected, "image_embeds_cfg") <= 1e-4 * max(1, scale_of(expected))
    expected = golden3["enc.image_latents_cond"]
    assert max_error(conditions.image_latents[cond_rows], expected, "image_latents") <= 1e-4 * max(1, scale_of(expected))
    assert not conditions.image_latents[[0, 1, 2, 3, 4, 10, 11, 12, 13, 14]].any()
    assert torch.equal(conditions.views[0, :, ::8, ::8], golden3["enc.imgs_in_view0_stride8"])
    assert torch.equal(conditions.views[4, :, ::8, ::8], golden3["enc.imgs_in_view4_stride8"])
    expected = golden3["trellis.cond"]
    assert max_error(conditions.trellis_cond[1:], expected, "trellis.cond") <= 2e-3 * scale_of(expected)
    assert not conditions.trellis_cond[0].any()


def test_three_step_run_matches_reference(pipe, conditions, golden3):
    calls: list[tuple] = []

    def record(module, args, output):
        calls.append((args, output))

    hook = pipe.denoiser.register_forward_hook(record)
    noise = Stage1Noise(multiview=golden3["rng.01"], structure=golden3["rng.02"])
    progress: list[tuple[str, int, int]] = []
    try:
        latents, structure = pipe.sample(
            conditions, noise, num_inference_steps=3, guidance_scale=3.0,
            callback=lambda *event: progress.append(event),
        )
    finally:
        hook.remove()
    assert progress == [("stage1", 1, 3), ("stage1", 2, 3), ("stage1", 3, 3)]
    # the first model call, before guidance
    args, (v_2d, v_3d) = calls[0]
    assert args[1].item() == golden3["step0.model_in.timestep"].item()
    assert torch.equal(args[4], golden3["step0.model_in.trellis_x"])
    assert torch.equal(args[5], golden3["step0.model_in.trellis_t"])
    for ours, name in ((v_2d, "step0.model_out.v_2d_raw"), (v_3d, "step0.model_out.v_trellis_raw")):
        assert max_error(ours, golden3[name], name) <= 1e-4 * max(1, scale_of(golden3[name])), name
    # final latents: 1e-3 * max(1, max|ref|)
    for ours, name in ((latents / SCALING, "final.latents_div_scaling"), (structure, "final.trellis_latent")):
        assert max_error(ours, golden3[name], "3 steps " + name) <= 1e-3 * max(1, scale_of(golden3[name])), name
    decoded = pipe.decode_views(latents)
    assert max_error(decoded[:, :, ::8, ::8], golden3["final.vae_decoded_stride8"], "3 steps decoded_stride8") <= 1e-3
    crop = golden3["final.vae_decoded_crop_256_320"]
    assert max_error(decoded[:, :, 256:320, 256:320], crop, "3 steps decoded_crop") <= 1e-3
    logits, coords = pipe.decode_structure(structure)
    assert_same_occupancy(coords, golden3["final.coords"], logits)


def assert_same_occupancy(coords: torch.Tensor, expected: torch.Tensor, logits: torch.Tensor) -> None:
    """Identical sets, or differences only where the logit is within 1e-4 of 0."""
    ours = {tuple(row) for row in coords.tolist()}
    theirs = {tuple(row) for row in expected.tolist()}
    for b, x, y, z in ours ^ theirs:
        assert abs(logits[b, 0, x, y, z].item()) < 1e-4, (x, y, z)
    assert coords.dtype == torch.int32


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~3-4 min on 2 idle cores; far more on a loaded machine
def test_fifty_step_run_matches_reference(pipe, person, onestage):
    golden = load_file(onestage / "golden/pipeline_run_50steps.safetensors")
    noise = pipe.draw_noise(torch.Generator().manual_seed(43))
    progress: list[tuple[str, int, int]] = []
    out = pipe(person, latents=noise, callback=lambda *event: progress.append(event))
    assert progress[-1] == ("stage1", 50, 50) and len(progress) == 50

    latents, structure = out.extras["multiview_latents"], out.extras["structure_latent"]
    expected = golden["final.latents_div_scaling"]
    assert max_error(latents / SCALING, expected, "50 steps latents_div_scaling") <= 5e-3 * scale_of(expected)
    expected = golden["final.trellis_latent"]
    assert max_error(structure, expected, "50 steps trellis_latent") <= 5e-3 * scale_of(expected)
    logits, _ = pipe.decode_structure(structure)
    assert out.coords.dtype == np.int32 and out.coords.shape[1] == 4
    assert_same_occupancy(torch.from_numpy(out.coords), golden["final.coords"], logits)

    # views: the reference decode (stride 16) rounded as PNGs are; overridden regions excluded
    reference = ((golden["final.vae_decoded_stride16"] / 2 + 0.5).clamp(0, 1) * 255 + 0.5).floor()
    normals = np.stack([np.asarray(im) for im in out.normals])[:, ::16, ::16].transpose(0, 3, 1, 2)
    colours = np.stack([np.asarray(im) for im in out.colors])[:, ::16, ::16].transpose(0, 3, 1, 2)
    print("50 steps PNG levels off (normals 1-4, colours 1-4):",
          np.abs(normals[1:] - reference[1:5].numpy()).max(), np.abs(colours[1:] - reference[6:].numpy()).max())
    assert np.abs(normals[1:] - reference[1:5].numpy()).max() <= 1
    assert np.abs(colours[1:] - reference[6:].numpy()).max() <= 1
    outside_face_box = np.ones((48, 48), dtype=bool)
    outside_face_box[0:16, 16:32] = False  # rows 0:256, cols 256:512 at stride 16
    assert np.abs(normals[0] - reference[0].numpy())[:, outside_face_box].max() <= 1
    # the front colour view is the input on white
    assert [im.size for im in out.colors + out.normals] == [(768, 768)] * 10
    assert out.input_image.size == (768, 768) and out.input_image.mode == "RGBA"


def test_bfloat16_stays_close_to_float32(onestage):
    """One cross-space forward in bfloat16 on the CPU against the float32 reference output."""
    from pipelines.synchuman.stage1.denoiser import CrossSpaceDenoiser

    golden = load_file(onestage / "golden/unet_forward.safetensors")
    model = CrossSpaceDenoiser.from_pretrained(
        onestage / "ckpt/SyncHuman_2D3DCrossSpaceDiffusion", dtype=torch.bfloat16
    )
    with torch.no_grad():
        v_2d, v_3d = model(
            golden["in.sample"], golden["in.timestep"].item(), golden["in.encoder_hidden_states"],
            golden["in.class_labels"], golden["in.trellis_x"], golden["in.trellis_t"], golden["in.trellis_cond"],
        )
    assert v_2d.dtype == torch.float32
    # measured: 1.6e-2 (2D) and 3.3e-2 (3D) of max|ref|; bf16 keeps 8 bits of mantissa
    assert max_error(v_2d, golden["out.v_2d"], "bf16 v_2d") <= 5e-2 * scale_of(golden["out.v_2d"])
    assert max_error(v_3d, golden["out.v_trellis"], "bf16 v_trellis") <= 6e-2 * scale_of(golden["out.v_trellis"])


def test_rejects_images_without_a_person(pipe):
    transparent = Image.new("RGBA", (64, 96), (0, 0, 0, 0))
    with pytest.raises(PipelineInputError) as error:
        pipe(transparent, num_inference_steps=1)
    assert error.value.code == "no_foreground"
    with pytest.raises(PipelineInputError) as error:
        pipe(Image.new("RGB", (64, 96)), num_inference_steps=1)
    assert error.value.code == "invalid_image"
    with pytest.raises(PipelineInputError) as error:
        pipe(Image.new("RGBA", (64, 96), (10, 20, 30, 255)), num_inference_steps=1)
    assert error.value.code == "invalid_image"
    faint = Image.new("RGBA", (64, 96), (0, 0, 0, 0))
    faint.paste((200, 100, 50, 100), (10, 10, 50, 80))  # visible, but nowhere above alpha 0.8
    with pytest.raises(PipelineInputError) as error:
        pipe(faint, num_inference_steps=1)
    assert error.value.code == "no_foreground"


def test_from_pretrained_names_every_missing_file(tmp_path, onestage):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as error:
        SyncHumanStage1Pipeline.from_pretrained(tmp_path, dinov2=tmp_path / "dinov2.pth")
    message = str(error.value)
    for name in (
        "pipeline_config.json", "diffusion_pytorch_model.safetensors", "image_encoder/model.safetensors",
        "preprocessor_config.json", "sparse_structure_decoder/model.safetensors", "normal_embeds.pt",
        "clr_embeds.pt", "dinov2.pth",
    ):
        assert name in message
    assert "vae/config.json" not in message
