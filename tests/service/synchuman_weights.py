"""A SyncHuman weights directory in the layout the README documents, from the tiny parity checkpoints.

The parity fixtures (``../shared/parity/synchuman``) hold the official folders
with tiny random weights.  :func:`assemble_weights` lays them out as an operator
lays out the released ones, with symbolic links (nothing is copied or
committed)::

    {dest}/OneStage/          -> onestage/ckpt
    {dest}/SecondStage/       -> secondstage/ckpt
    {dest}/prompt_embeds/     -> onestage/prompt_embeds   (the README's "beside OneStage/")
    {dest}/dinov2/dinov2_vitl14_reg4_pretrain.pth -> the tiny DINOv2
    {dest}/dinov2/dinov2_config.json              -> its head count (2; the released
                                                     ViT-L's 16 follow from its width)

``omit`` names one file, relative to ``dest``, to leave out: the model folder
holding it is then rebuilt from links to its other files.
"""

from __future__ import annotations

from pathlib import Path

LINKS = {
    "OneStage": "onestage/ckpt",
    "SecondStage": "secondstage/ckpt",
    "prompt_embeds": "onestage/prompt_embeds",
    "dinov2/dinov2_vitl14_reg4_pretrain.pth": "onestage/dinov2/dinov2_vitl14_reg4_tiny.pth",
    "dinov2/dinov2_config.json": "onestage/dinov2/dinov2_config.json",
}


def assemble_weights(parity_dir: Path, dest: Path, *, omit: str | None = None) -> Path:
    """Lay out ``parity_dir``'s checkpoints under ``dest`` as the README says; returns ``dest``."""
    for name, source in LINKS.items():
        target = parity_dir / source
        link = dest / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if omit is not None and omit.startswith(name + "/"):
            _link_tree_without(target, link, omit[len(name) + 1 :])
        elif omit != name:
            link.symlink_to(target)
    return dest


def _link_tree_without(source: Path, dest: Path, omitted: str) -> None:
    """Mirror ``source`` into ``dest`` with one link per file, leaving out ``omitted`` (relative)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or relative.as_posix() == omitted:
            continue
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / relative).symlink_to(path)
