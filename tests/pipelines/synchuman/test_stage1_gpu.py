"""SyncHuman stage 1 on a CUDA GPU: reduced precision against the float32 goldens, and a full-size job.

Runs on the device machine only (``-m gpu``).  The parity fixtures come from
``SYNCHUMAN_SHARED_DIR`` (or ``../shared``); full-size random weights from
``SYNCHUMAN_RANDOM_WEIGHTS`` when it names a folder, else they are written
into a temporary folder first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pipelines.synchuman.stage1 import Stage1Noise, SyncHumanStage1Pipeline
from pipelines.synchuman.stage1.denoiser import CrossSpaceDenoiser

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# float16 keeps 11 mantissa bits, bfloat16 8: bounds relative to max|ref| of the float32 reference
TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 8e-2}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.float()
    return (actual.float().cpu() - expected).abs().max().item() / expected.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_reduced_precision_forward_close_to_float32(parity_dir, dtype):
    onestage = parity_dir / "onestage"
    golden = load_file(onestage / "golden/unet_forward.safetensors")
    model = CrossSpaceDenoiser.from_pretrained(
        onestage / "ckpt/SyncHuman_2D3DCrossSpaceDiffusion", device="cuda", dtype=dtype
    )
    inputs = {k: v.cuda() for k, v in golden.items() if k.startswith("in.")}
    with torch.no_grad():
        v_2d, v_3d = model(
            inputs["in.sample"], golden["in.timestep"].item(), inputs["in.encoder_hidden_states"],
            inputs["in.class_labels"], inputs["in.trellis_x"], inputs["in.trellis_t"], inputs["in.trellis_cond"],
        )
    errors = (relative_error(v_2d, golden["out.v_2d"]), relative_error(v_3d, golden["out.v_trellis"]))
    print(f"{dtype} forward relative errors (2D, 3D): {errors[0]:.2e}, {errors[1]:.2e}")
    assert max(errors) <= TOLERANCE[dtype]


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(torch.float16, "eager"), (torch.float16, "graph"), (torch.bfloat16, "graph"), (torch.float16, "compiled")],
    ids=["float16-eager", "float16-graph-channels-last", "bfloat16-graph-channels-last", "float16-compiled"],
)
def test_reduced_precision_three_step_run_close_to_float32(parity_dir, dtype, mode):
    onestage = parity_dir / "onestage"
    golden = load_file(onestage / "golden/pipeline_run_model_3steps.safetensors")
    pipe = SyncHumanStage1Pipeline.from_pretrained(
        onestage / "ckpt", dinov2=onestage / "dinov2/dinov2_vitl14_reg4_tiny.pth", device="cuda", dtype=dtype
    )
    pipe.set_channels_last(mode == "graph")
    pipe.set_cuda_graph(mode == "graph")
    if mode == "compiled":
        pipe.compile()
    conditions, _ = pipe.encode_conditions(Image.open(onestage / "input.png"))
    noise = Stage1Noise(multiview=golden["rng.01"], structure=golden["rng.02"])
    latents, structure = pipe.sample(conditions, noise, num_inference_steps=3)
    decoded = pipe.decode_views(latents)  # the VAE decoder is compiled too in "compiled" mode
    errors = (
        relative_error(latents / 0.18215, golden["final.latents_div_scaling"]),
        relative_error(structure, golden["final.trellis_latent"]),
        relative_error(decoded[:, :, ::8, ::8], golden["final.vae_decoded_stride8"]),
    )
    print(f"{dtype} {mode} 3-step relative errors (2D, 3D latents, decoded): "
          + ", ".join(f"{e:.2e}" for e in errors))
    assert max(errors) <= TOLERANCE[dtype]
    assert (pipe._graphed is not None) == (mode == "graph"), "the CUDA graph fell back to eager calls"


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    given = os.environ.get("SYNCHUMAN_RANDOM_WEIGHTS")
    if given and (Path(given) / "OneStage" / "pipeline_config.json").is_file():
        return Path(given)
    from bench.make_random_weights import write_dinov2, write_onestage

    folder = tmp_path_factory.mktemp("synchuman-random")
    write_onestage(folder / "OneStage", device="cuda")
    write_dinov2(folder / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth", device="cuda")
    return folder


def test_full_size_job_produces_views_and_occupancy(random_weights):
    from pipelines.synchuman.stage1.pipeline import warm_up_figure

    pipe = SyncHumanStage1Pipeline.from_pretrained(
        random_weights / "OneStage",
        dinov2=random_weights / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth",
        device="cuda",
        dtype=torch.float16,
    )
    events: list[tuple[str, int, int]] = []
    out = pipe(warm_up_figure(), generator=torch.Generator().manual_seed(0), num_inference_steps=4,
               callback=lambda *event: events.append(event))
    assert events == [("stage1", i, 4) for i in range(1, 5)]
    assert [im.size for im in out.colors + out.normals] == [(768, 768)] * 10
    assert all(im.mode == "RGB" for im in out.colors + out.normals)
    assert torch.isfinite(out.extras["multiview_latents"]).all()
    assert out.coords.dtype == np.int32 and out.coords.shape[1] == 4
    assert (out.coords[:, 0] == 0).all() and ((out.coords[:, 1:] >= 0) & (out.coords[:, 1:] < 64)).all()
    assert set(out.timings) == {"conditions", "sampling", "decode"}
