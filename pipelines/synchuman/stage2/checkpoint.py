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


def build_and_load(model_class: type[nn.Module], config: object, folder: Path, device: torch.device) -> nn.Module:
    """``model_class(config)`` with the weights of ``folder``, read straight onto ``device`` in float32.

    The module is built on the meta device (no random initialisation of
    parameters that are overwritten at once) and the tensors are read from the
    file directly to ``device``, where the float16 -> float32 conversion runs;
    on a GPU this takes seconds instead of the half-minute a CPU build, CPU
    conversion and copy take for the full-size models.
    """
    with torch.device("meta"):
        module = model_class(config)
    state = load_file(str(folder / "model.safetensors"), device=str(device))
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    unloaded = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if unloaded:
        raise ValueError(f"{folder / 'model.safetensors'} leaves {', '.join(unloaded)} unset")
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


def missing_weight_files(ckpt_dir: Path) -> list[str]:
    """Every file of the SecondStage folder that is absent (checked before anything is loaded)."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / "pipeline.json").is_file():
        return [str(ckpt_dir / "pipeline.json")]
    missing = []
    for sub in read_pipeline_config(ckpt_dir)["models"].values():
        for name in ("config.json", "model.safetensors"):
            if not (ckpt_dir / sub / name).is_file():
                missing.append(str(ckpt_dir / sub / name))
    return missing
