"""SLAT flow forward and the guidance-interval sampler against the reference goldens."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.checkpoint import build_and_load, model_folder, read_model_config, read_pipeline_config
from pipelines.synchuman.stage2.flow_model import SLatFlowConfig, SLatFlowModel
from pipelines.synchuman.stage2.sampler import GuidanceIntervalSamplerConfig, SamplerTrace, sample_guidance_interval

pytestmark = pytest.mark.parity


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def flow(parity_dir):
    ckpt = parity_dir / "secondstage" / "ckpt"
    folder = model_folder(ckpt, read_pipeline_config(ckpt), "slat_flow_model")
    config = SLatFlowConfig.from_args(read_model_config(folder)[1])
    return build_and_load(SLatFlowModel, config, folder, torch.device("cpu")).eval()


@torch.no_grad()
def test_slat_flow_forward_matches_reference(flow, parity_dir):
    g = load_file(str(parity_dir / "secondstage" / "golden" / "slat_flow_forward.safetensors"))
    out = flow(SparseVoxels(g["in.coords"], g["in.feats"]), g["in.t"], g["in.cond"])
    assert torch.equal(out.coords, g["out.coords"])
    ref = g["out.feats"]
    assert _max_err(out.feats, ref) <= 1e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("batch_guidance", [False, True])
@torch.no_grad()
def test_slat_sampler_matches_reference(flow, parity_dir, batch_guidance):
    ckpt = parity_dir / "secondstage" / "ckpt"
    args = read_pipeline_config(ckpt)
    config = GuidanceIntervalSamplerConfig.from_pipeline(args["slat_sampler"])
    assert config.steps == 3 and config.cfg_interval == (0.7, 1.0)
    g = load_file(str(parity_dir / "secondstage" / "golden" / "slat_sampler.safetensors"))
    trace = SamplerTrace()
    cond = g["in.cond"]
    samples = sample_guidance_interval(
        flow, SparseVoxels(g["in.coords"], g["in.noise"]), cond, torch.zeros_like(cond), config,
        batch_guidance=batch_guidance, trace=trace,
    )  # fmt: skip
    for k in range(3):
        for name, got in (("pred_x_t", trace.pred_x_t[k]), ("pred_x_0", trace.pred_x_0[k])):
            ref = g[f"step{k}.{name}"]
            assert _max_err(got, ref) <= 1e-3 * max(1.0, ref.abs().max().item()), f"step{k}.{name}"
    ref = g["out.samples"]
    assert _max_err(samples, ref) <= 1e-3 * max(1.0, ref.abs().max().item())
    norm = args["slat_normalization"]
    slat = samples * torch.tensor(norm["std"]) + torch.tensor(norm["mean"])
    ref = g["out.slat_denormalized"]
    assert _max_err(slat, ref) <= 1e-3 * max(1.0, ref.abs().max().item())
