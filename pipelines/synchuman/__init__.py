"""SyncHuman (arXiv 2510.07723) as our own code, loading the official checkpoints unchanged.

``stage1/`` is the 2D-3D cross-space diffusion (five views, normals, 64^3
occupancy); ``stage2/`` the structured-latent flow and the Gaussian and mesh
decoders; ``sparse/`` the sparse-voxel tensor ops both need; ``dinov2.py`` the
image encoder both condition on.
"""
