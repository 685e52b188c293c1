"""Python SDK of the job service: plain HTTP through httpx.

    client = SyncHumanClient("http://127.0.0.1:8000")
    job = client.submit("photo.png", options={"seed": 7, "formats": ["usdz"]})
    job = client.wait(job["id"], on_update=print)   # follows the job's event stream
    paths = client.download(job, "out/")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from client.events import JobEvent, read_events

TERMINAL = ("succeeded", "failed", "canceled")
DEFAULT_DOWNLOADS = (
    "stage2/output.glb",
    "stage2/output_mesh.ply",
    "stage2/thumbnail.png",
    "stage2/output.usdz",
    "stage2/output_obj.zip",
    "results.zip",
)
"""What ``download`` fetches unless told otherwise (the USDZ and OBJ only where the job asked for them)."""


class WebhookSignatureError(ValueError):
    """A webhook call whose headers or signature do not check out (or that is too old)."""


class SyncHumanError(Exception):
    """An error answer of the API: HTTP status plus its stable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


class JobFailedError(SyncHumanError):
    """The job finished without a result (failed or canceled)."""


class StreamUnavailable(Exception):
    """The server answered the event stream with something else: follow the job by polling."""


STREAM_READ_TIMEOUT_S = 60.0
"""Longest silence on an event stream (the server sends a keep-alive every 15 s) before reconnecting."""
STREAM_RETRIES = 5
"""Reconnections in a row that fail before ``wait`` falls back to polling."""


class SyncHumanClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False, headers=headers)

    @staticmethod
    def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> dict[str, Any]:
        """Check a webhook call's Standard Webhooks signature; returns the job it carries.

        ``body`` must be the raw request body; ``secret`` the service's ``whsec_…``
        secret.  Raises ``WebhookSignatureError`` (a ``ValueError``) if the call was
        not signed with it, was altered, or is more than five minutes old.
        """
        raw = body.encode() if isinstance(body, str) else bytes(body)
        try:
            Webhook(secret).verify(raw, {k.lower(): v for k, v in headers.items()})
        except (WebhookVerificationError, ValueError) as exc:
            raise WebhookSignatureError(str(exc)) from None
        return json.loads(raw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SyncHumanClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise SyncHumanError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError, TypeError):
                raise SyncHumanError(response.status_code, "http_error", response.text[:200]) from None
        return response

    def ready(self) -> dict[str, Any]:
        """``/readyz`` as a dict (``ready`` is False while workers load)."""
        return self.http.get("/readyz").json()

    def submit(
        self,
        image: str | Path | bytes | None = None,
        *,
        image_url: str | None = None,
        options: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        idempotency_key: str | None = None,
        deliver_to: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Queue one photo (a path, raw bytes, or ``image_url``); returns ``{id, status, queue_position, links}``.

        ``deliver_to`` maps artifact names (``"stage2/output.glb"``...) to presigned
        PUT URLs of your storage: once the job succeeded each is uploaded there, and
        the job's ``deliveries`` says how each went.

        With ``idempotency_key``, a retried call (same key, same request, within
        24 h) returns the job of the first call instead of creating another.
        """
        data: dict[str, str] = {}
        files = None
        if image is not None:
            content = image if isinstance(image, bytes) else Path(image).read_bytes()
            name = "image.png" if isinstance(image, bytes) else Path(image).name
            files = {"image": (name, content, "application/octet-stream")}
        if image_url is not None:
            data["image_url"] = image_url
        if options:
            data["options"] = json.dumps(options)
        if webhook_url:
            data["webhook_url"] = webhook_url
        if webhook_events:
            data["webhook_events"] = ",".join(webhook_events)
        if deliver_to:
            data["deliver_to"] = json.dumps(dict(deliver_to))
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._check(self.http.post("/v1/jobs", data=data, files=files, headers=headers)).json()

    def get(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/jobs/{job_id}")).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.post(f"/v1/jobs/{job_id}/cancel")).json()

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's Server-Sent Events (``GET /v1/jobs/{id}/events``) until the server closes the stream.

        Each event carries the job as ``get`` returns it; the last one of a
        finished job is named ``done``.  Pass the ``id`` of the last event seen
        as ``last_event_id`` to resume after it.  Raises ``SyncHumanError`` for
        an error answer (``job_not_found``...).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout) as response:
            if response.status_code == 204:
                return
            if response.status_code >= 400:
                response.read()
                self._check(response)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise StreamUnavailable(f"the server answered {response.headers.get('content-type')!r}, not events")
            yield from read_events(response.iter_lines())

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 3600.0,
        poll_interval: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        stream: bool = True,
    ) -> dict[str, Any]:
        """Follow the job until it finishes and return it; raises TimeoutError after ``timeout`` seconds.

        With ``stream`` (the default) it reads the job's event stream,
        reconnecting where it left off if the connection drops, and falls back
        to polling every ``poll_interval`` seconds if the server has no stream
        (an older server, a proxy that does not pass it).  ``on_progress`` (or
        its older name ``on_update``) gets the job at every change:
        ``status``, ``stage`` and ``progress`` (0-100) say where it is.
        """
        on_update = on_update or on_progress
        deadline = time.monotonic() + timeout
        if stream:
            job = self._wait_streaming(job_id, deadline, on_update)
            if job is not None:
                return job
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            time.sleep(poll_interval)

    def _wait_streaming(
        self, job_id: str, deadline: float, on_update: Callable[[dict[str, Any]], None] | None
    ) -> dict[str, Any] | None:
        """The finished job, following its events; None if the server cannot stream (poll instead)."""
        last_id: str | None = None
        failures = 0
        while time.monotonic() < deadline:
            try:
                for event in self.events(job_id, last_event_id=last_id):
                    last_id, failures = event.id, 0
                    if on_update is not None:
                        on_update(event.job)
                    if event.job["status"] in TERMINAL:
                        return event.job
                    if time.monotonic() > deadline:
                        break
            except StreamUnavailable:
                return None
            except SyncHumanError as exc:
                if exc.code in ("job_not_found", "unauthorized"):
                    raise
                return None  # no such route here (an older server): poll
            except (httpx.TransportError, ValueError):  # dropped connection or a garbled event
                failures += 1
                if failures > STREAM_RETRIES:
                    return None
                time.sleep(min(0.5 * 2**failures, 5.0))
                continue
            if last_id is None:
                return None  # closed at once without an event: nothing to follow here
        raise TimeoutError(f"job {job_id} did not finish in time")

    def download(
        self, job: dict[str, Any] | str, directory: str | Path, names: tuple[str, ...] | None = DEFAULT_DOWNLOADS
    ) -> list[Path]:
        """Download a succeeded job's artifacts (``names``, or all if None) into ``directory``."""
        if isinstance(job, str):
            job = self.get(job)
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            raise JobFailedError(409, error.get("code", "job_not_ready"), error.get("message", f"the job is {job['status']}"))
        outputs = job["outputs"]
        wanted = list(outputs) if names is None else [n for n in names if n in outputs]
        directory = Path(directory)
        paths = []
        for name in wanted:
            target = directory / Path(name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            with httpx.stream("GET", outputs[name]["url"], timeout=120.0, trust_env=False) as response:
                if response.status_code != 200:
                    raise SyncHumanError(response.status_code, "download_failed", f"could not download {name}")
                with open(target, "wb") as f:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
            paths.append(target)
        return paths
