"""SyncHuman stage 2: structured-latent flow, Gaussian and mesh decoders.

* :mod:`.flow_model`, :mod:`.sampler` - the SLAT flow transformer and its Euler
  sampler with guidance on a time interval;
* :mod:`.mv_features`, :mod:`.decoder_trunk` - multiview DINOv2 features and the
  decoder trunk that injects them per voxel;
* :mod:`.gaussian_decoder`, :mod:`.mesh_decoder` - the two heads;
* :mod:`.mesh_extraction`, :mod:`.flexicubes`, :mod:`.flexicubes_tables` - sparse
  FlexiCubes surface extraction;
* :mod:`.checkpoint` - reading the official ``SecondStage`` folder;
* :mod:`.pipeline` - :class:`SyncHumanStage2Pipeline`, the stage as one object.
"""
