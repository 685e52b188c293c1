"""Random-weight SyncHuman ``SecondStage`` checkpoints at the published sizes.

``second_stage_configs()`` returns ``pipeline.json`` and the three model
configs as the official release lays them out; ``write_second_stage(path)``
writes that folder with random float16 weights (about 3 GB), loadable by
``SyncHumanStage2Pipeline.from_pretrained``.  Used for GPU timing only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig
from pipelines.synchuman.stage2.flow_model import SLatFlowConfig, SLatFlowModel
from pipelines.synchuman.stage2.gaussian_decoder import SLatGaussianDecoder
from pipelines.synchuman.stage2.mesh_decoder import SLatMeshDecoder

TRUNK = {
    "resolution": 64,
    "model_channels": 768,
    "latent_channels": 8,
    "num_blocks": 12,
    "num_heads": 12,
    "mlp_ratio": 4,
    "attn_mode": "swin",
    "window_size": 8,
    "pe_mode": "ape",
    "use_fp16": True,
    "use_checkpoint": False,
    "qk_rms_norm": False,
    "mv_dim": 1024,
    "mv_condition_mode": "4_view",
    "use_multiscale": True,
    "use_faceinfo": False,
}


def second_stage_configs() -> dict[str, dict]:
    """``{"pipeline.json": ..., "<folder>/config.json": ...}`` at the published sizes."""
    gs_rep = {
        "lr": {"_xyz": 1.0, "_features_dc": 1.0, "_opacity": 1.0, "_scaling": 1.0, "_rotation": 0.1},
        "perturb_offset": True,
        "voxel_size": 1.5,
        "num_gaussians": 32,
        "2d_filter_kernel_size": 0.1,
        "3d_filter_kernel_size": 9e-4,
        "scaling_bias": 4e-3,
        "opacity_bias": 0.1,
        "scaling_activation": "softplus",
    }
    flow = {
        "resolution": 64, "in_channels": 8, "out_channels": 8, "model_channels": 1024, "cond_channels": 1024,
        "num_blocks": 24, "num_heads": 16, "mlp_ratio": 4, "patch_size": 2, "num_io_res_blocks": 2,
        "io_block_channels": [128], "pe_mode": "ape", "qk_rms_norm": True, "use_fp16": True,
    }  # fmt: skip
    pipeline = {
        "name": "SyncHumanTwoStagePipeline",
        "args": {
            "models": {"slat_decoder_gs": "decoder_GS", "slat_decoder_mesh": "decoder_Mesh", "slat_flow_model": "slat_flow"},
            "slat_sampler": {
                "name": "FlowEulerGuidanceIntervalSampler",
                "args": {"sigma_min": 1e-5},
                "params": {"steps": 25, "cfg_strength": 5.0, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0},
            },
            "slat_normalization": {"mean": [0.0] * 8, "std": [1.0] * 8},
        },
    }
    return {
        "pipeline.json": pipeline,
        "slat_flow/config.json": {"name": "SLatFlowModel", "args": flow},
        "decoder_GS/config.json": {"name": "SLatGaussianDecoder", "args": {**TRUNK, "representation_config": gs_rep}},
        "decoder_Mesh/config.json": {"name": "SLatMeshDecoder", "args": {**TRUNK, "representation_config": {"use_color": True}}},
    }


def build_models(seed: int = 0) -> tuple[SLatFlowModel, SLatGaussianDecoder, SLatMeshDecoder]:
    """The three networks with random weights (float32, CPU)."""
    torch.manual_seed(seed)
    configs = second_stage_configs()
    flow = SLatFlowModel(SLatFlowConfig.from_args(configs["slat_flow/config.json"]["args"]))
    gs = SLatGaussianDecoder(DecoderConfig.from_args(configs["decoder_GS/config.json"]["args"]))
    mesh = SLatMeshDecoder(DecoderConfig.from_args(configs["decoder_Mesh/config.json"]["args"]))
    for model in (flow, gs, mesh):
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                torch.nn.init.normal_(param, std=0.02)
    return flow, gs, mesh


def write_second_stage(path: str | Path, seed: int = 0) -> Path:
    """Write the folder (``pipeline.json`` + one folder per model), parameters in float16."""
    path = Path(path)
    configs = second_stage_configs()
    models = dict(zip(("slat_flow", "decoder_GS", "decoder_Mesh"), build_models(seed)))
    for name, content in configs.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content, indent=1))
    for folder, model in models.items():
        params = {n for n, _ in model.named_parameters()}
        state = {k: (v.half() if k in params else v.float()).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path / folder / "model.safetensors"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    write_second_stage(parser.parse_args().out)


if __name__ == "__main__":
    main()
