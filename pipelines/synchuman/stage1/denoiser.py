"""SyncHuman's 2D-3D cross-space diffusion network: one forward predicts both velocities.

The multiview UNet (2D, 5 views x {normal, colour} x CFG halves) and the
TRELLIS structure transformer (3D, 16^3 latent) run side by side; the 24 DiT
blocks are cut into three segments placed before the UNet's down path, after
its middle block and after its up path, and four sync blocks exchange
features at fixed feature-map widths:

* down path, after a cross-attention block whose output is ``image_to_voxel_width``
  (24) wide: ``h <- SS[0](sample, h)``; after one ``voxel_to_image_width`` (12)
  wide: ``sample <- MV[0](sample, h)`` (the skip tensors keep the values before it);
* up path, before a cross-attention block whose input is 24 wide: ``h <- SS[1]``;
  before an attention-free block whose input is 12 wide: ``sample <- MV[1]``.

Sizes come from the official ``config.json``; the sync blocks' sizes, which the
official constructor hard-codes, come from :class:`SyncBlockSizes` (real values
by default, ``tiny_overrides.json`` when the folder has one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from safetensors.torch import load_file
from torch import nn

from pipelines.synchuman.stage1.structure_dit import ModulatedCrossBlock, TimestepEmbedder, absolute_position_embedding
from pipelines.synchuman.stage1.sync_blocks import ImageToVoxelSync, VoxelToImageSync
from pipelines.synchuman.stage1.unet_blocks import BlockSettings, UNetMidBlockMV2DCrossAttn, make_down_block, make_up_block

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
OVERRIDES_NAME = "tiny_overrides.json"


@dataclass(frozen=True)
class SyncBlockSizes:
    """Widths of the four sync blocks (the official constructor's hard-coded values by default)."""

    image_to_voxel_mv_dims: tuple[int, ...] = (640, 1280)
    """Multiview channels read by SS[0], SS[1]."""
    voxel_to_image_mv_dims: tuple[int, ...] = (1280, 1280)
    """Multiview channels updated by MV[0], MV[1]."""
    structure_dim: int = 1024
    heads: int = 16
    dim_head: int = 64

    @classmethod
    def from_overrides(cls, data: dict[str, Any]) -> SyncBlockSizes:
        """Apply a ``tiny_overrides.json`` (maps real widths to the sizes actually used)."""
        real = cls()
        ss = data.get("SS_query_dim_MV", {})
        mv = data.get("MV_query_dim_MV", {})
        return cls(
            image_to_voxel_mv_dims=tuple(ss.get(str(d), d) for d in real.image_to_voxel_mv_dims),
            voxel_to_image_mv_dims=tuple(mv.get(str(d), d) for d in real.voxel_to_image_mv_dims),
            structure_dim=data.get("query_dim_Structure", real.structure_dim),
            heads=data.get("heads", real.heads),
            dim_head=data.get("dim_head", real.dim_head),
        )


@dataclass(frozen=True)
class CrossSpaceConfig:
    """The constructor arguments that matter; defaults are the released model's."""

    # 2D multiview UNet
    in_channels: int = 8
    out_channels: int = 4
    sample_size: int = 96
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlockMV2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlockMV2D",) * 3
    attention_head_dim: tuple[int, ...] = (5, 10, 20, 20)
    """Number of heads per level (the diffusers naming quirk: not a head width)."""
    cross_attention_dim: int = 1024
    projection_class_embeddings_input_dim: int = 2048
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    downsample_padding: int = 1
    num_views: int = 5
    # 3D structure transformer (TRELLIS ss_flow_img_dit_L_16l8)
    resolution: int = 16
    trellis_in_channels: int = 8
    trellis_out_channels: int = 8
    model_channels: int = 1024
    cond_channels: int = 1024
    num_blocks: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qk_rms_norm: bool = True
    # sync blocks
    num_dual_CrossAttblocks: int = 2
    image_to_voxel_width: int = 24
    voxel_to_image_width: int = 12
    sync: SyncBlockSizes = field(default_factory=SyncBlockSizes)

    # Options of the official class this implementation does not cover (value it must have).
    _REQUIRED = {
        "class_embed_type": "projection",
        "time_embedding_type": "positional",
        "mid_block_type": "UNetMidBlockMV2DCrossAttn",
        "selfattn_block": "self_rowwise",
        "mvcd_attention": True,
        "cd_attention_mid": False,
        "multiview_attention": True,
        "use_linear_projection": True,
        "transformer_layers_per_block": 1,
        "patch_size": 1,
        "pe_mode": "ape",
        "share_mod": False,
        "qk_rms_norm_cross": False,
        "addition_downsample": False,
        "use_dino": False,
        "class_embeddings_concat": False,
        "addition_embed_type": None,
        "encoder_hid_dim_type": None,
        "center_input_sample": False,
    }

    @classmethod
    def from_dict(cls, config: dict[str, Any], sync: SyncBlockSizes | None = None) -> CrossSpaceConfig:
        for key, required in cls._REQUIRED.items():
            if key in config and config[key] != required:
                raise NotImplementedError(f"cross-space config {key}={config[key]!r} is not supported (only {required!r})")
        names = {f.name for f in fields(cls)} - {"sync"}
        kwargs: dict[str, Any] = {}
        for name in names:
            if name not in config:
                continue
            value = config[name]
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        levels = len(kwargs.get("block_out_channels", cls.block_out_channels))
        for name in ("attention_head_dim",):
            if isinstance(kwargs.get(name), int):
                kwargs[name] = (kwargs[name],) * levels
        if config.get("num_heads") is None and "num_head_channels" in config:
            kwargs["num_heads"] = config["model_channels"] // config["num_head_channels"]
        return cls(**kwargs, sync=sync or SyncBlockSizes())


class CrossSpaceDenoiser(nn.Module):
    """``forward(sample, timestep, text, class_labels, trellis_x, trellis_t, trellis_cond) -> (v_2d, v_3d)``.

    Parameter names follow the official state dict (diffusers names for the 2D
    part, TRELLIS names for ``t_embedder``/``input_layer``/``pos_emb``/``blocks``/
    ``out_layer``, ``dual_CrossAttblocks_{SS,MV}`` for the sync blocks).
    """

    def __init__(self, config: CrossSpaceConfig) -> None:
        super().__init__()
        self.config = c = config
        channels = c.block_out_channels
        time_dim = channels[0] * 4
        # -- 2D: embeddings and UNet ---------------------------------------------------------------
        self.conv_in = nn.Conv2d(c.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], c.flip_sin_to_cos, c.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], time_dim, act_fn="silu")
        self.class_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, time_dim)
        settings = BlockSettings(time_dim, c.norm_num_groups, c.norm_eps, c.cross_attention_dim, c.num_views)
        self.down_blocks = nn.ModuleList()
        out_ch = channels[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, channels[i]
            self.down_blocks.append(
                make_down_block(
                    kind, settings, in_ch, out_ch, c.layers_per_block, c.attention_head_dim[i],
                    add_downsample=i < len(channels) - 1, downsample_padding=c.downsample_padding,
                )
            )
        self.mid_block = UNetMidBlockMV2DCrossAttn(settings, channels[-1], c.attention_head_dim[-1])
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(channels))
        reversed_heads = list(reversed(c.attention_head_dim))
        out_ch = reversed_channels[0]
        for i, kind in enumerate(c.up_block_types):
            prev_ch, out_ch = out_ch, reversed_channels[i]
            in_ch = reversed_channels[min(i + 1, len(channels) - 1)]
            self.up_blocks.append(
                make_up_block(
                    kind, settings, in_ch, prev_ch, out_ch, c.layers_per_block + 1, reversed_heads[i],
                    add_upsample=i < len(channels) - 1,
                )
            )
        self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, channels[0], eps=c.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], c.out_channels, kernel_size=3, padding=1)
        # -- 3D: structure transformer ---------------------------------------------------------------
        self.t_embedder = TimestepEmbedder(c.model_channels)
        self.register_buffer("pos_emb", absolute_position_embedding(c.resolution, c.model_channels))
        self.input_layer = nn.Linear(c.trellis_in_channels, c.model_channels)
        self.blocks = nn.ModuleList(
            ModulatedCrossBlock(c.model_channels, c.cond_channels, c.num_heads, c.mlp_ratio, c.qk_rms_norm)
            for _ in range(c.num_blocks)
        )
        self.out_layer = nn.Linear(c.model_channels, c.trellis_out_channels)
        # -- sync blocks -------------------------------------------------------------------------------
        s = c.sync
        pooled = c.voxel_to_image_width
        self.dual_CrossAttblocks_SS = nn.ModuleList(
            ImageToVoxelSync(s.image_to_voxel_mv_dims[i], s.structure_dim, s.heads, s.dim_head, c.resolution, c.num_views)
            for i in range(c.num_dual_CrossAttblocks)
        )
        self.dual_CrossAttblocks_MV = nn.ModuleList(
            VoxelToImageSync(
                s.voxel_to_image_mv_dims[i], s.structure_dim, s.heads, s.dim_head, c.resolution, pooled, c.num_views
            )
            for i in range(c.num_dual_CrossAttblocks)
        )

    # -- loading ---------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> CrossSpaceDenoiser:
        """Load the official ``SyncHuman_2D3DCrossSpaceDiffusion/`` folder (strict)."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_NAME).read_text())
        overrides = folder / OVERRIDES_NAME
        sync = SyncBlockSizes.from_overrides(json.loads(overrides.read_text())) if overrides.is_file() else None
        with torch.device("meta"):
            model = cls(CrossSpaceConfig.from_dict(config, sync))
        state = load_file(folder / WEIGHTS_NAME)
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device=device, dtype=dtype).eval()

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    channels_last = False
    """Whether the 2D feature maps are kept channels-last (see :meth:`use_channels_last`)."""

    def use_channels_last(self, enabled: bool = True) -> None:
        """Store the 2D convolution weights (and so the UNet's maps) channels-last, or back."""
        layout = torch.channels_last if enabled else torch.contiguous_format
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=layout)
        self.channels_last = enabled

    # -- forward ---------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: float | torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor,
        trellis_x: torch.Tensor,
        trellis_t: torch.Tensor,
        trellis_cond: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities for the 2D batch [n, C_in, h, w] and the 3D batch [B, 8, R, R, R].

        ``timestep``: the UNet time (1000 t), a float or a tensor broadcast over
        the batch; ``trellis_t``: [1] or [B] tensor of 1000 t for the DiT.
        """
        c = self.config
        dtype = self.dtype
        n = sample.shape[0]
        text = encoder_hidden_states.to(dtype)
        # 2D time + image embedding
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(n)
        temb = self.time_embedding(self.time_proj(timesteps).to(dtype))
        temb = temb + self.class_embedding(class_labels.to(dtype))  # [n, 4*C0]
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        x = self.conv_in(sample.to(dtype).contiguous(memory_format=layout))

        # 3D tokens: [B, 8, R, R, R] -> [B, R^3, 8] (x slowest) -> [B, R^3, D]
        b = trellis_x.shape[0]
        h = trellis_x.reshape(b, c.trellis_in_channels, -1).transpose(1, 2).to(dtype)
        h = self.input_layer(h) + self.pos_emb.to(dtype)
        t_emb = self.t_embedder(trellis_t.reshape(-1).to(sample.device))  # [1 or B, D]
        cond = trellis_cond.to(dtype)
        third = c.num_blocks // 3
        for block in self.blocks[:third]:
            h = block(h, t_emb, cond)

        skips: tuple[torch.Tensor, ...] = (x,)
        for down in self.down_blocks:
            if getattr(down, "has_cross_attention", False):
                x, res = down(x, temb, text)
                if x.shape[-1] == c.image_to_voxel_width:
                    h = self.dual_CrossAttblocks_SS[0](x, h)
                if x.shape[-1] == c.voxel_to_image_width:
                    x = self.dual_CrossAttblocks_MV[0](x, h)
            else:
                x, res = down(x, temb)
            skips += res

        x = self.mid_block(x, temb, text)
        for block in self.blocks[third : 2 * third]:
            h = block(h, t_emb, cond)

        for up in self.up_blocks:
            res, skips = skips[-len(up.resnets) :], skips[: -len(up.resnets)]
            if getattr(up, "has_cross_attention", False):
                if x.shape[-1] == c.image_to_voxel_width:
                    h = self.dual_CrossAttblocks_SS[1](x, h)
                x = up(x, res, temb, text)
            else:
                if x.shape[-1] == c.voxel_to_image_width:
                    x = self.dual_CrossAttblocks_MV[1](x, h)
                x = up(x, res, temb)

        for block in self.blocks[2 * third :]:
            h = block(h, t_emb, cond)
        h = F.layer_norm(h.float(), h.shape[-1:])
        h = self.out_layer(h.to(dtype)).float()  # [B, R^3, 8]
        r = c.resolution
        v_3d = h.transpose(1, 2).reshape(b, c.trellis_out_channels, r, r, r)

        x = F.silu(self.conv_norm_out(x))
        v_2d = self.conv_out(x)
        return v_2d.float().contiguous(), v_3d
