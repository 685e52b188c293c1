"""Reading a job's Server-Sent Events (``GET /v1/jobs/{id}/events``), as the HTML standard parses them.

A stream is lines; an empty line ends an event.  ``id:``, ``event:`` and
``data:`` lines set its fields (several ``data:`` lines join with newlines),
lines starting with ``:`` are comments (keep-alives), ``retry:`` is for
browsers.  The service's events carry the job as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    id: str
    """Send it back as ``Last-Event-ID`` to resume after this event."""
    name: str
    """``update`` while the job is queued or running; ``done`` for the finished job (the last event)."""
    job: dict[str, Any]
    """The job as ``GET /v1/jobs/{id}`` returns it."""


def read_events(lines: Iterable[str]) -> Iterator[JobEvent]:
    """The events of a stream given line by line (without line endings); raises ValueError on bad JSON."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield JobEvent(id=fields.get("id", ""), name=fields.get("event", "message"), job=json.loads("\n".join(data)))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            fields[name] = value
