"""Euler sampling of the SLAT flow with classifier-free guidance on a time interval.

The flow runs from noise at t = 1 to data at t = 0 on the rescaled schedule
``t' = r t / (1 + (r - 1) t)``.  At each step the model sees ``1000 t``; where
``cfg_interval[0] <= t <= cfg_interval[1]`` the velocity is
``(1 + s) v(cond) - s v(neg_cond)``, elsewhere ``v(cond)`` alone; then
``x <- x - (t - t_prev) v``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines.synchuman.sparse.tensor import SparseVoxels


@dataclass(frozen=True)
class GuidanceIntervalSamplerConfig:
    """``pipeline.json`` ``slat_sampler``: ``args`` (sigma_min) and ``params``."""

    steps: int = 25
    cfg_strength: float = 5.0
    cfg_interval: tuple[float, float] = (0.5, 1.0)
    rescale_t: float = 3.0
    sigma_min: float = 1e-5

    @classmethod
    def from_pipeline(cls, sampler: dict) -> GuidanceIntervalSamplerConfig:
        params = sampler.get("params", {})
        return cls(
            steps=int(params.get("steps", cls.steps)),
            cfg_strength=float(params.get("cfg_strength", cls.cfg_strength)),
            cfg_interval=tuple(params.get("cfg_interval", cls.cfg_interval)),
            rescale_t=float(params.get("rescale_t", cls.rescale_t)),
            sigma_min=float(sampler.get("args", {}).get("sigma_min", cls.sigma_min)),
        )


def time_pairs(steps: int, rescale_t: float) -> list[tuple[float, float]]:
    """``(t, t_prev)`` for each step, from 1 down to 0, in float64."""
    t = np.linspace(1.0, 0.0, steps + 1)
    t = rescale_t * t / (1 + (rescale_t - 1) * t)
    return [(float(t[i]), float(t[i + 1])) for i in range(steps)]


@dataclass
class SamplerTrace:
    """Per-step states, kept only when asked for (parity checks and debugging)."""

    pred_x_t: list[torch.Tensor] = field(default_factory=list)
    pred_x_0: list[torch.Tensor] = field(default_factory=list)


def _stack_batch(x: SparseVoxels, copies: int) -> SparseVoxels:
    """The same cells repeated as samples 0..copies-1 (one sample in, ``copies`` out)."""
    coords = x.coords.repeat(copies, 1)  # (copies*N, 4)
    coords[:, 0] = torch.arange(copies, device=x.device, dtype=coords.dtype).repeat_interleave(x.num_voxels)
    return SparseVoxels(coords, x.feats.repeat(copies, 1))


def sample_guidance_interval(
    model: Callable[[SparseVoxels, torch.Tensor, torch.Tensor], SparseVoxels],
    noise: SparseVoxels,
    cond: torch.Tensor,
    neg_cond: torch.Tensor,
    config: GuidanceIntervalSamplerConfig,
    *,
    batch_guidance: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    trace: SamplerTrace | None = None,
) -> torch.Tensor:
    """Integrate one sample from ``noise`` (its feats at t = 1); returns the final feats.

    With ``batch_guidance`` the conditional and unconditional velocities come from
    one forward pass over a batch of two copies of the cells (same arithmetic,
    fewer launches); otherwise from two passes, as the reference does.
    ``cond``/``neg_cond``: (1, M, C).  ``on_step(step, total)`` runs after each step.
    """
    if noise.batch_size != 1:
        raise ValueError("the sampler integrates one sample at a time")
    x = noise.feats
    pair = _stack_batch(noise, 2) if batch_guidance else None
    both = torch.cat([cond, neg_cond], dim=0)  # (2, M, C)
    sigma = config.sigma_min
    pairs = time_pairs(config.steps, config.rescale_t)
    for step, (t, t_prev) in enumerate(pairs):
        guided = config.cfg_interval[0] <= t <= config.cfg_interval[1]
        if guided and batch_guidance:
            t_in = torch.full((2,), 1000 * t, dtype=torch.float32, device=x.device)
            v_both = model(pair.replace(x.repeat(2, 1)), t_in, both).feats
            n = noise.num_voxels
            v = (1 + config.cfg_strength) * v_both[:n] - config.cfg_strength * v_both[n:]
        else:
            t_in = torch.full((1,), 1000 * t, dtype=torch.float32, device=x.device)
            v = model(noise.replace(x), t_in, cond).feats
            if guided:
                v_neg = model(noise.replace(x), t_in, neg_cond).feats
                v = (1 + config.cfg_strength) * v - config.cfg_strength * v_neg
        if trace is not None:
            trace.pred_x_0.append((1 - sigma) * x - (sigma + (1 - sigma) * t) * v)
        x = x - (t - t_prev) * v
        if trace is not None:
            trace.pred_x_t.append(x)
        if on_step is not None:
            on_step(step + 1, len(pairs))
    return x
