"""Write full-size random weights in the official SyncHuman layout (for benchmarks and load tests).

The published model's sizes (spec section 2.3) with each module's default
random initialisation, stored as the release stores them (float16 parameters,
float32 buffers), so that the loaders and the GPU cost can be exercised without
the real checkpoints::

    python bench/make_random_weights.py /tmp/synchuman-random --device cuda

writes ``OneStage/`` (``pipeline_config.json``, the diffusers / transformers /
TRELLIS subfolders, ``fixed_prompt_embeds_7view/``) and
``dinov2/dinov2_vitl14_reg4_pretrain.pth``.  The unused CLIP text encoder is
not written.  One function per stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipelines.synchuman.dinov2 import DinoV2
from pipelines.synchuman.stage1.denoiser import CrossSpaceConfig, CrossSpaceDenoiser
from pipelines.synchuman.stage1.structure_decoder import StructureDecoder, StructureDecoderConfig

CROSS_SPACE_CONFIG = {
    "_class_name": "SyncHuman_2D3DCrossSpaceDiffusion",
    "in_channels": 8, "out_channels": 4, "sample_size": 96,
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlockMV2D"] * 3 + ["DownBlock2D"],
    "mid_block_type": "UNetMidBlockMV2DCrossAttn",
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlockMV2D"] * 3,
    "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "use_linear_projection": True,
    "upcast_attention": True, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 2048,
    "flip_sin_to_cos": True, "freq_shift": 0, "norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu",
    "time_embedding_type": "positional", "transformer_layers_per_block": 1, "downsample_padding": 1,
    "resnet_time_scale_shift": "default", "center_input_sample": False,
    "num_views": 5, "selfattn_block": "self_rowwise", "mvcd_attention": True, "cd_attention_mid": False,
    "cd_attention_last": False, "multiview_attention": True, "sparse_mv_attention": True, "use_dino": False,
    "addition_downsample": False,
    "resolution": 16, "trellis_in_channels": 8, "trellis_out_channels": 8, "model_channels": 1024,
    "cond_channels": 1024, "num_blocks": 24, "num_heads": 16, "num_head_channels": 64, "mlp_ratio": 4,
    "patch_size": 1, "pe_mode": "ape", "qk_rms_norm": True, "qk_rms_norm_cross": False, "share_mod": False,
    "use_fp16": True, "use_checkpoint": False, "mv_cond_channels": 640, "num_dual_CrossAttblocks": 2,
}
VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 768, "scaling_factor": 0.18215, "force_upcast": True,
}
CLIP_VISION_CONFIG = {
    "hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "intermediate_size": 5120,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}
FEATURE_EXTRACTOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "CLIPImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 224},
}
STRUCTURE_DECODER_CONFIG = {
    "name": "SparseStructureDecoder",
    "args": {"out_channels": 1, "latent_channels": 8, "num_res_blocks": 2, "channels": [512, 128, 32],
             "num_res_blocks_middle": 2, "norm_type": "layer", "use_fp16": True},
}
PIPELINE_CONFIG = {
    "num_views": 5,
    "metadata": {
        "sparse_structure_decoder": {"subdir": "sparse_structure_decoder",
                                     "class": "SyncHuman.models.OneStage.sparse_structure_vae.SparseStructureDecoder"},
        "feature_extractor": {"subdir": "feature_extractor", "class": "transformers.CLIPImageProcessor"},
        "image_encoder": {"subdir": "image_encoder", "class": "transformers.CLIPVisionModelWithProjection"},
        "text_encoder": {"subdir": "text_encoder", "class": "transformers.CLIPTextModel"},
        "SyncHuman_2D3DCrossSpaceDiffusion": {
            "subdir": "SyncHuman_2D3DCrossSpaceDiffusion",
            "class": "SyncHuman.models.OneStage.SyncHuman_2D3DCrossSpaceDiffusion.SyncHuman_2D3DCrossSpaceDiffusion"},
        "vae": {"subdir": "vae", "class": "diffusers.AutoencoderKL"},
    },
}


def _release_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters as float16, buffers as float32, contiguous on the CPU (the release's storage)."""
    params = {name for name, _ in module.named_parameters()}
    return {
        name: tensor.detach().to("cpu", torch.float16 if name in params else torch.float32).contiguous()
        for name, tensor in module.state_dict().items()
    }


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


@torch.no_grad()
def write_onestage(folder: Path, device: str = "cpu", seed: int = 0) -> None:
    """``OneStage/``: cross-space network, VAE, CLIP image encoder + processor, structure decoder, prompts."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    _write_json(folder / "pipeline_config.json", PIPELINE_CONFIG)

    subdir = folder / "SyncHuman_2D3DCrossSpaceDiffusion"
    with torch.device(device):
        model = CrossSpaceDenoiser(CrossSpaceConfig.from_dict(CROSS_SPACE_CONFIG))
    _write_json(subdir / "config.json", CROSS_SPACE_CONFIG)
    save_file(_release_state(model), subdir / "diffusion_pytorch_model.safetensors")
    del model

    with torch.device(device):
        vae = AutoencoderKL(**{k: v for k, v in VAE_CONFIG.items() if not k.startswith("_")})
    vae.half().save_pretrained(folder / "vae", safe_serialization=True)
    del vae

    with torch.device(device):
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VISION_CONFIG))
    clip.half().save_pretrained(folder / "image_encoder", safe_serialization=True)
    del clip
    _write_json(folder / "feature_extractor/preprocessor_config.json", FEATURE_EXTRACTOR_CONFIG)

    with torch.device(device):
        decoder = StructureDecoder(StructureDecoderConfig(
            **{k: tuple(v) if isinstance(v, list) else v
               for k, v in STRUCTURE_DECODER_CONFIG["args"].items() if k != "use_fp16"}))
    _write_json(folder / "sparse_structure_decoder/config.json", STRUCTURE_DECODER_CONFIG)
    save_file(_release_state(decoder), folder / "sparse_structure_decoder/model.safetensors")

    prompts = folder / "fixed_prompt_embeds_7view"
    prompts.mkdir(parents=True, exist_ok=True)
    for name in ("normal_embeds.pt", "clr_embeds.pt"):
        torch.save(torch.randn(7, 77, 1024).half(), prompts / name)


@torch.no_grad()
def write_dinov2(path: Path, device: str = "cpu", seed: int = 1) -> None:
    """DINOv2 ViT-L/14 with registers in the ``torch.hub`` state-dict format (float32 ``.pth``)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = DinoV2()
        for token in (model.cls_token, model.pos_embed, model.register_tokens):
            torch.nn.init.normal_(token, std=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--device", default="cpu", help="where to initialise the modules (cuda is faster)")
    args = parser.parse_args()
    write_onestage(args.out / "OneStage", args.device)
    write_dinov2(args.out / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth", args.device)
    print(f"wrote random SyncHuman weights to {args.out}")


if __name__ == "__main__":
    main()
