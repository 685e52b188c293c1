"""Helpers shared by the test folders; each exists here once.

* ``requirements``: ``../shared``, the pose model and other tools a test needs (skip, or fail under CI=true).
* ``service_stack``: the API and its workers as real processes on the session's Redis and SeaweedFS.
* ``fault_stack`` and ``fault_pipelines``: the same service on pipelines that fail on request.
* ``lifecycle_stack`` and ``webhook_receiver``: a stack with a fast webhook retry schedule, and its receiver.
* ``gltf_validation``: the Khronos glTF validator (node) on a GLB.
* ``output_checks``, ``preview_runs``, ``not_people``, ``tiny_onnx``: checks and inputs of the pipeline tests
  that the service tests use too.

Their fixtures are in ``tests/conftest.py``; the servers themselves are started by ``client.stack``.
"""
