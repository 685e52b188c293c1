"""Runs of the preview pipeline kept for inspection: the photo, the views, the mesh and each progress call."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from pipelines.base import GenerationPipelines, MeshOutput, MultiviewOutput


def on_plain_background(rgba: Image.Image, color=(182, 190, 176)) -> Image.Image:
    """An opaque RGB photo: the cut-out composited over a plain wall colour, with a margin."""
    margin = max(rgba.size) // 6
    canvas = Image.new("RGB", (rgba.width + 2 * margin, rgba.height + 2 * margin), color)
    canvas.paste(rgba, (margin, margin), rgba)
    return canvas


@dataclass
class PreviewRun:
    name: str
    source: Image.Image
    views: MultiviewOutput
    mesh: MeshOutput
    stage1_steps: list
    stage2_steps: list


def run_preview(preview: GenerationPipelines, name: str, image: Image.Image) -> PreviewRun:
    stage1_steps: list = []
    stage2_steps: list = []
    views = preview.stage1(image, callback=lambda *args: stage1_steps.append(args))
    mesh = preview.stage2(views, callback=lambda *args: stage2_steps.append(args))
    return PreviewRun(name, image, views, mesh, stage1_steps, stage2_steps)
