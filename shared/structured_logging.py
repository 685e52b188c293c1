"""Structured JSON logs for every process of the service, and what they may not say.

One line per event: ``{"ts", "level", "logger", "msg", "service", ...}`` plus
the ``extra=`` fields of the call (``job_id``, ``stage``, ``code``...).  Two
context variables add themselves to every line written while they are set:
``request_id`` (one per HTTP request, set by the API's middleware) and
``job_id`` (set by a worker around one job).

Logs never carry secrets: bearer tokens, API keys and URL signatures are
masked, and exception tracebacks are reduced to the exception's type and
message unless ``SYNCHUMAN_LOG_TRACEBACKS=1`` asks for them (operators
debugging on their own machine).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)

_SECRET_PATTERNS = [
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\bshk_[0-9a-f]+_[A-Za-z0-9_-]+"), "shk_[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_[redacted]"),
    # Query strings of signed URLs (S3 presigned or the local backend's own).
    (re.compile(r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token)=)[^&\s\"']+"),
     r"\1[redacted]"),
]


_SECRET_MARKERS = ("bearer", "shk_", "whsec_", "signature", "credential", "token", "sig=")
"""Lower-case substrings every match of ``_SECRET_PATTERNS`` contains: a line with none needs no regex."""


def redact(text: str) -> str:
    """``text`` with every token, key and URL signature masked."""
    lowered = text.lower()
    if not any(marker in lowered for marker in _SECRET_MARKERS):
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets masked."""

    def __init__(self, service: str, *, tracebacks: bool = False) -> None:
        super().__init__()
        self.service = service
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
        }
        request_id = request_id_var.get()
        job_id = job_id_var.get()
        if request_id:
            event["request_id"] = request_id
        if job_id:
            event["job_id"] = job_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            event["error"] = f"{type(exc).__name__}: {exc}"
            if self.tracebacks:
                event["traceback"] = self.formatException(record.exc_info)
        return redact(json.dumps(event, ensure_ascii=False, default=str))


def configure_logging(service: str, level: str | int | None = None) -> None:
    """Send every logger's records to stderr as JSON (idempotent: replaces earlier handlers)."""
    tracebacks = os.environ.get("SYNCHUMAN_LOG_TRACEBACKS", "") == "1"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, tracebacks=tracebacks))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("SYNCHUMAN_LOG_LEVEL", "INFO").upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
