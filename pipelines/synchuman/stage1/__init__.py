"""SyncHuman stage 1: the 2D-3D cross-space diffusion (views, normals, occupancy)."""

from pipelines.synchuman.stage1.pipeline import Stage1Noise, SyncHumanStage1Pipeline

__all__ = ["Stage1Noise", "SyncHumanStage1Pipeline"]
