"""The API's typed request and response bodies (shown in /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.deliveries import ArtifactDelivery
from shared.jobs import JobError, JobStage, JobStatus


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"])
    message: str = Field(examples=["the PNG image cannot be decoded (truncated or corrupt)"])
    retryable: bool = False


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


class JobLinks(BaseModel):
    self: str = Field(examples=["/v1/jobs/3f2c..."])
    result: str = Field(examples=["/v1/jobs/3f2c.../result"])
    cancel: str = Field(examples=["/v1/jobs/3f2c.../cancel"])


class JobCreated(BaseModel):
    id: str
    status: JobStatus = Field(examples=["queued"])
    queue_position: int | None = Field(examples=[1])
    links: JobLinks


class ArtifactUrl(BaseModel):
    url: str
    expires_at: float = Field(description="Unix time after which the URL no longer works.")
    media_type: str = Field(
        description="The file's media type (also its Content-Type when downloaded).",
        examples=["model/gltf-binary", "image/png", "video/mp4", "image/webp", "model/vnd.usdz+zip"],
    )


class PipelineInfo(BaseModel):
    name: str = Field(examples=["preview"])
    version: str
    device: str


class JobRead(BaseModel):
    id: str
    status: JobStatus
    stage: JobStage | None = None
    progress: float = Field(ge=0, le=100, description="0-100, from the pipelines' step callbacks.")
    queue_position: int | None = None
    eta_s: float | None = Field(None, description="Estimated seconds until the job finishes.")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int
    options: dict
    pipeline: PipelineInfo | None = None
    timings: dict[str, float] = Field(description="Seconds per stage.")
    stage_started_at: dict[str, float] = Field(
        {},
        description="Stage -> when (Unix seconds) the current attempt entered it; a stage ends when the next "
        "one listed starts, the last at `finished_at`. Shows one job's export overlapping the next job's stage 1.",
    )
    error: JobError | None = None
    outputs: dict[str, ArtifactUrl] = Field(
        description="Artifacts by name (e.g. 'stage2/output.glb', 'stage2/thumbnail.png', 'results.zip'), each "
        "with a fresh URL and its media type: the stage-1 set ('stage1/...') once stage 1 is done, every "
        "artifact once the job succeeded (with a mesh: the thumbnail and turntables, and the formats asked for)."
    )
    deliveries: dict[str, ArtifactDelivery] = Field(
        {}, description="Artifact name -> outcome of its upload to the `deliver_to` URL (never shown back)."
    )
    links: JobLinks


class ServiceCheck(BaseModel):
    ok: bool
    detail: str | None = None


class ReadyBody(BaseModel):
    ready: bool
    checks: dict[str, ServiceCheck]
    workers: list[dict]
