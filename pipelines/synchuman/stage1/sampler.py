"""Flow-matching Euler sampling with classifier-free guidance, as SyncHuman stage 1 runs it.

The schedule is ``t_i = linspace(1, 0, N + 1)`` warped by ``t <- s t / (1 + (s - 1) t)``
(``rescale_t`` s = 3), step i going from ``t_i`` to ``t_{i+1}``; the state moves
by ``x <- x - (t_i - t_{i+1}) v``.  Guidance is the standard
``v = v_uncond + scale * (v_cond - v_uncond)`` (stage 2 uses another formula).
"""

from __future__ import annotations

import numpy as np
import torch


def flow_timesteps(num_steps: int, rescale_t: float = 3.0) -> list[tuple[float, float]]:
    """The (t, t_next) pairs of an N-step run, from 1 down to 0 (float64 values)."""
    t = np.linspace(1, 0, num_steps + 1)
    t = rescale_t * t / (1 + (rescale_t - 1) * t)
    return [(float(t[i]), float(t[i + 1])) for i in range(num_steps)]


def guide(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float) -> torch.Tensor:
    return v_uncond + scale * (v_cond - v_uncond)


def euler_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    return x - (t - t_next) * v
