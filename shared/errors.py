"""The service's error hierarchy: stable codes, clear messages, no HTTP.

Every error a client can see is a :class:`ServiceError` with a ``code`` that
never changes meaning.  ``api/errors.py`` maps each class to an HTTP status;
the worker stores ``{code, message, retryable}`` on the failed job record.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``code`` is the stable machine-readable reason."""

    code = "internal_error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class InvalidInputError(ServiceError):
    """The request is well formed but its content cannot be used (bad image, bad option)."""

    code = "invalid_input"


class InvalidImageError(InvalidInputError):
    code = "invalid_image"


class EmptyUploadError(InvalidInputError):
    code = "empty_upload"


class UnsupportedFormatError(InvalidInputError):
    code = "unsupported_format"


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body of a content type the endpoint does not read (e.g. XML, or no body at all)."""

    code = "unsupported_media_type"


class NoForegroundError(InvalidInputError):
    code = "no_foreground"


class NoPersonError(InvalidInputError):
    """The photo shows no person (a cube, a texture, a landscape): the pose model found nobody."""

    code = "no_person"


class ImageTooLargeError(InvalidInputError):
    """Over the pixel cap (a decompression bomb, or simply too many pixels)."""

    code = "image_too_large"


class PayloadTooLargeError(InvalidInputError):
    """Over the byte cap."""

    code = "payload_too_large"


class InvalidOptionsError(InvalidInputError):
    code = "invalid_options"


class InvalidDeliveryError(InvalidInputError):
    """``deliver_to`` is not a JSON object of known artifact names to http(s) URLs."""

    code = "invalid_deliver_to"


class MissingImageError(InvalidInputError):
    """Neither ``image`` nor ``image_url`` was given (or both were)."""

    code = "missing_image"


class MultipleImagesError(InvalidInputError):
    """More than one ``image`` part: the service never picks one silently."""

    code = "multiple_images"


class UrlRefusedError(InvalidInputError):
    """``image_url``/``webhook_url`` points somewhere the service will not go."""

    code = "url_refused"


class UrlFetchError(InvalidInputError):
    """``image_url`` could not be downloaded (timeout, status, too large)."""

    code = "url_fetch_failed"


class JobNotFoundError(ServiceError):
    code = "job_not_found"


class UrlSignatureError(ServiceError):
    """A download URL that was not signed by this service, or has expired."""

    code = "invalid_signature"


class JobNotReadyError(ServiceError):
    """The job has no result (yet, or ever)."""

    code = "job_not_ready"


class IllegalTransitionError(ServiceError):
    """A state change the job state machine does not allow."""

    code = "illegal_transition"


class ServiceUnavailableError(ServiceError):
    code = "service_unavailable"
    retryable = True


class QueueUnavailableError(ServiceUnavailableError):
    """A worker lost the job store (Redis) for longer than it retries: the job was not the model's fault."""

    code = "queue_unavailable"


class InternalError(ServiceError):
    """The worker itself failed on a job (a defect, not the model and not the input)."""

    code = "internal_error"
    retryable = True


class StorageError(ServiceError):
    code = "storage_error"
    retryable = True


class JobCanceledError(ServiceError):
    """Raised from a progress callback to stop a job whose cancellation was requested."""

    code = "canceled"


class WorkerLostError(ServiceError):
    """The job's worker died more often than ``worker.max_attempts`` allows."""

    code = "worker_lost"


class PipelineError(ServiceError):
    """The model failed on this input for a reason that is not the input's fault."""

    code = "pipeline_error"


class UnauthorizedError(ServiceError):
    """No API key, an unknown one, or a revoked one (authentication is on)."""

    code = "unauthorized"


class RetryLaterError(ServiceError):
    """Refused for now; ``retry_after_s`` says when trying again makes sense (``Retry-After``)."""

    retryable = True
    default_retry_after_s = 1.0

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = self.default_retry_after_s if retry_after_s is None else retry_after_s


class RateLimitedError(RetryLaterError):
    """The key submits faster than its token bucket allows."""

    code = "rate_limited"


class TooManyJobsInFlightError(RetryLaterError):
    """The key already has its maximum of queued + running jobs."""

    code = "too_many_jobs_in_flight"


class QueueFullError(RetryLaterError):
    """The global queue-length cap is reached: backpressure for everyone."""

    code = "queue_full"


class RequestInProgressError(RetryLaterError):
    """An ``Idempotency-Key`` whose first request has not created its job yet (still running, e.g.
    waiting on a slow store): the retry cannot be answered with the job yet, nor treated as new."""

    code = "request_in_progress"


class StorageUnavailableError(RetryLaterError):
    """The object store could not be reached, even after retries with backoff (or past its deadline)."""

    code = "storage_unavailable"
    default_retry_after_s = 5.0


class GpuOutOfMemoryError(ServiceError):
    """The job did not fit in GPU memory; not retried on the same GPU (it would loop)."""

    code = "gpu_out_of_memory"


class JobTimeoutError(ServiceError):
    """A stage ran past its time limit; the worker's watchdog stopped it."""

    code = "timeout"


class JobNotCancelableError(ServiceError):
    """The job already succeeded or failed; there is nothing left to cancel."""

    code = "job_not_cancelable"


class IdempotencyConflictError(InvalidInputError):
    """An ``Idempotency-Key`` reused within its lifetime for a different request."""

    code = "idempotency_key_reused"


class NoWebhookError(ServiceError):
    """The job has no ``webhook_url``, or no event to redeliver yet."""

    code = "no_webhook"


class WaitTimeoutError(ServiceError):
    """The synchronous API stopped waiting; the job goes on and can be polled by its id."""

    code = "timeout"
    retryable = True

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "job_id": self.job_id}


class WebhookSignatureError(ServiceError, ValueError):
    """A webhook call whose headers or signature do not check out (receiver side)."""

    code = "invalid_webhook_signature"


class ConfigurationError(ServiceError):
    """The process's settings cannot run a safe deployment (a missing or public secret); it refuses to start."""

    code = "configuration_error"
