"""Turning a generated mesh into the files a user downloads.

The export takes a triangle mesh in the official z-up frame and produces a
textured GLB (y-up, one PBR material) and a PLY.  The pieces are small and
independent so that both generation methods can reuse them:

* ``simplify``  -- quadric decimation to a fraction of the faces;
* ``holes``     -- removal of hidden inner faces and filling of small holes;
* ``uv``        -- UV parametrisation (xatlas);
* ``raster``    -- a PyTorch triangle rasteriser (UV space and camera views,
                   CPU or GPU) giving face ids and barycentrics per pixel;
* ``cameras``   -- the orthographic stage-1 cameras and spherical view sets;
* ``splat``     -- rendering of 3D Gaussians;
* ``bake``      -- fitting a texture to multi-view observations;
* ``gltf``      -- GLB and PLY serialisation;
* ``clock``     -- wall-clock and CPU time of the phases;
* ``textured``  -- the whole chain, as stage 2 of SyncHuman calls it.
"""
