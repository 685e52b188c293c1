"""Reading the official ``SecondStage`` folder: ``pipeline.json`` and one folder per model.

Each model folder holds ``config.json`` (``{"name": <class>, "args": {...}}``)
and ``model.safetensors``.  Parameters are stored in float16 and buffers in
float32; they are loaded into float32 modules (the values are exact).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn


def read_model_config(folder: Path) -> tuple[str, dict]:
    """The class name and constructor arguments of one model folder."""
    config = json.loads((folder / "config.json").read_text())
    return config["name"], config.get("args", {})


def load_weights(module: nn.Module, folder: Path) -> nn.Module:
    """Load ``model.safetensors`` strictly into ``module`` (converted to float32)."""
    state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    module.load_state_dict(state, strict=True)
    return module


def read_pipeline_config(ckpt_dir: Path) -> dict:
    """``pipeline.json`` ``args``: model folders, sampler parameters, latent normalisation."""
    config = json.loads((ckpt_dir / "pipeline.json").read_text())
    return config["args"]


def model_folder(ckpt_dir: Path, pipeline_args: dict, key: str) -> Path:
    """The folder of model ``key``; paths in ``pipeline.json`` are relative to ``ckpt_dir``."""
    sub = pipeline_args["models"][key]
    path = ckpt_dir / sub
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json (model {key!r} of {ckpt_dir})")
    return path


def to_device(module: nn.Module, device: str | torch.device) -> nn.Module:
    return module.to(device).eval().requires_grad_(False)
