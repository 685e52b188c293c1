"""Settings of the preview method, in one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.preview.appearance import AppearanceConfig
from pipelines.preview.inflation import InflationConfig
from pipelines.preview.skeleton import SkeletonConfig

PREVIEW_VERSION = "0.2.0"


@dataclass(frozen=True)
class PreviewConfig:
    skeleton: SkeletonConfig = field(default_factory=SkeletonConfig)
    inflation: InflationConfig = field(default_factory=InflationConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    supersampling: int = 1
    """Views are rendered at this multiple of 768 px and averaged down (anti-aliasing);
    1 renders at 768 px with hard edges (about 4x faster on the CPU)."""
    texture_dilation: int = 8
    """Texels past the UV charts' edges filled with the nearest chart colour (against seams)."""
