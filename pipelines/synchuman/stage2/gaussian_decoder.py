"""SyncHuman's SLAT Gaussian decoder: 3D Gaussians per occupied voxel.

The multiview trunk is followed by a LayerNorm and ``out_layer``, whose output
per voxel holds ``num_gaussians`` Gaussians laid out as
``_xyz (G*3) | _features_dc (G*3) | _scaling (G*3) | _rotation (G*4) | _opacity (G)``.
Offsets are bounded to ``voxel_size`` half-voxels around the voxel centre, each
Gaussian starting from its own fixed ``offset_perturbation`` (stored buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.geometry import Gaussians
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig, MultiviewDecoderTrunk

SH_C0 = 0.28209479177387814
"""Degree-0 spherical-harmonics constant: colour = 0.5 + SH_C0 * dc."""

LAYOUT = (("_xyz", 3), ("_features_dc", 3), ("_scaling", 3), ("_rotation", 4), ("_opacity", 1))


@dataclass
class GaussianParams:
    """Raw (pre-activation) Gaussian parameters, TRELLIS convention, plus their activations."""

    _xyz: torch.Tensor
    """(G, 3) positions in [0, 1]^3 (grid frame; world = _xyz - 0.5)."""
    _features_dc: torch.Tensor
    """(G, 1, 3) degree-0 SH coefficients."""
    _scaling: torch.Tensor
    """(G, 3) before softplus."""
    _rotation: torch.Tensor
    """(G, 4) wxyz before adding the identity and normalising."""
    _opacity: torch.Tensor
    """(G, 1) before the sigmoid."""
    scaling_bias: float
    opacity_bias: float
    min_kernel_size: float

    @property
    def get_xyz(self) -> torch.Tensor:
        return self._xyz - 0.5

    @property
    def get_scaling(self) -> torch.Tensor:
        bias = _inverse_softplus(self.scaling_bias)
        scales = F.softplus(self._scaling + bias)
        return torch.sqrt(scales.square() + self.min_kernel_size**2)

    @property
    def get_rotation(self) -> torch.Tensor:
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], device=self._rotation.device, dtype=self._rotation.dtype)
        return F.normalize(self._rotation + identity, dim=-1)

    @property
    def get_opacity(self) -> torch.Tensor:
        bias = torch.logit(torch.tensor(self.opacity_bias, dtype=torch.float32)).item()
        return torch.sigmoid(self._opacity + bias)

    @property
    def colors(self) -> torch.Tensor:
        return (0.5 + SH_C0 * self._features_dc[:, 0]).clamp(0.0, 1.0)

    def to_gaussians(self) -> Gaussians:
        """Activated parameters as the export's plain container."""

        def np32(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy().astype(np.float32)

        return Gaussians(
            xyz=np32(self.get_xyz),
            scaling=np32(self.get_scaling),
            rotation=np32(self.get_rotation),
            opacity=np32(self.get_opacity),
            colors=np32(self.colors),
        )


def _inverse_softplus(y: float) -> float:
    t = torch.tensor(y, dtype=torch.float32)
    return (t + torch.log(-torch.expm1(-t))).item()


def hammersley_offsets(count: int, voxel_size: float) -> torch.Tensor:
    """``atanh((2 h - 1) / voxel_size)`` of the 3D Hammersley points (i/count, radical inverses base 2, 3)."""

    def radical_inverse(base: int, n: int) -> float:
        value, scale = 0.0, 1.0 / base
        while n > 0:
            value += (n % base) * scale
            n //= base
            scale /= base
        return value

    points = torch.tensor([[i / count, radical_inverse(2, i), radical_inverse(3, i)] for i in range(count)])
    return torch.atanh((points.float() * 2 - 1) / voxel_size)


class SLatGaussianDecoder(MultiviewDecoderTrunk):
    """slat + multiview DINOv2 maps -> :class:`GaussianParams` (one sample)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__(config)
        rep = config.representation_config
        self.num_gaussians = int(rep["num_gaussians"])
        self.out_channels = sum(size for _, size in LAYOUT) * self.num_gaussians
        self.out_layer = torch.nn.Linear(config.model_channels, self.out_channels)
        self.register_buffer("offset_perturbation", hammersley_offsets(self.num_gaussians, float(rep["voxel_size"])))

    def raw_output(self, x: SparseVoxels, mv_color: torch.Tensor, mv_normal: torch.Tensor) -> torch.Tensor:
        """The ``out_layer`` output, (N, 14 * num_gaussians)."""
        h = self.trunk(x, mv_color, mv_normal)
        return self.out_layer(F.layer_norm(h.feats.float(), h.feats.shape[-1:]))

    def forward(self, x: SparseVoxels, mv_color: torch.Tensor, mv_normal: torch.Tensor) -> GaussianParams:
        return self.to_params(x, self.raw_output(x, mv_color, mv_normal))

    def to_params(self, x: SparseVoxels, raw: torch.Tensor) -> GaussianParams:
        rep = self.config.representation_config
        g = self.num_gaussians
        n = raw.shape[0]
        values: dict[str, torch.Tensor] = {}
        start = 0
        for name, size in LAYOUT:
            chunk = raw[:, start : start + size * g].reshape(n, g, size) * rep["lr"][name]  # (N, G, size)
            start += size * g
            if name == "_xyz":
                centre = (x.coords[:, 1:].float() + 0.5) / self.config.resolution  # (N, 3)
                if rep.get("perturb_offset", False):
                    chunk = chunk + self.offset_perturbation
                offset = torch.tanh(chunk) / self.config.resolution * 0.5 * rep["voxel_size"]
                values[name] = (centre.unsqueeze(1) + offset).reshape(n * g, 3)
            elif name == "_features_dc":
                values[name] = chunk.reshape(n * g, 1, 3)
            else:
                values[name] = chunk.reshape(n * g, size)
        return GaussianParams(
            **values,
            scaling_bias=float(rep["scaling_bias"]),
            opacity_bias=float(rep["opacity_bias"]),
            min_kernel_size=float(rep["3d_filter_kernel_size"]),
        )
