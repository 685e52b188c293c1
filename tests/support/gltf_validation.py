"""Validation of GLB files with the Khronos glTF validator (npm ``gltf-validator``).

The validator is a node package installed into ``.tools/node_modules`` by
``npm install --prefix .tools gltf-validator@2.0.0-dev.3.10`` (CI does this).
When node or the package is missing the calling test is skipped, except
under CI=true, where a missing validator is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.requirements import REPO_ROOT, unavailable

VALIDATOR_DIR = REPO_ROOT / ".tools" / "node_modules" / "gltf-validator"
SCRIPT = Path(__file__).resolve().parent / "validate_gltf.js"


def validate_glb(path_or_bytes: str | os.PathLike | bytes) -> dict:
    """Run the Khronos validator on a GLB and return its JSON report.

    ``report["issues"]["numErrors"]`` is the number of errors; the messages
    are in ``report["issues"]["messages"]``.
    """
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    if not (VALIDATOR_DIR / "package.json").is_file():
        unavailable(f"gltf-validator is not installed in {VALIDATOR_DIR.parent}")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(path_or_bytes, bytes):
            path = Path(tmp) / "model.glb"
            path.write_bytes(path_or_bytes)
        else:
            path = Path(path_or_bytes)
        result = subprocess.run(
            [node, str(SCRIPT), str(path), str(VALIDATOR_DIR)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"gltf-validator failed: {result.stderr.strip()}")
    return json.loads(result.stdout)
