"""Admission control for new jobs: per-key limits and a global queue cap.

One Lua script decides, atomically inside Redis, whether a submission may go
ahead, so that any number of API processes share the same counts:

1. the global queue (``{p}:queue``, the job store's sorted set of queued ids)
   must be shorter than ``max_queue_length``, otherwise the service is full
   (HTTP 503 with ``Retry-After``: backpressure instead of an unbounded queue);
2. the key must have fewer than ``max_in_flight`` jobs queued or running;
3. the key's token bucket (``burst`` tokens, refilled at ``rate_per_s``) must
   hold a token for this submission (both 2 and 3 answer HTTP 429).

Jobs in flight are a sorted set per key (``{p}:inflight:{key_id}``, scored by
admission time).  Nobody has to remember to remove a finished job: each
admission drops members whose record is terminal, or still missing
``ADMISSION_GRACE_S`` after admission (a submission that never completed).
A limit of 0 disables that check; with every check disabled there is nothing
to decide, so admission answers without a round trip to Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import redis
import redis.asyncio as aredis

ADMISSION_GRACE_S = 60.0
"""How long an admitted job may take to appear in the job store before it stops counting."""

_ADMIT = """
local bucket_key, inflight_key, queue_key = KEYS[1], KEYS[2], KEYS[3]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_in_flight = tonumber(ARGV[3])
local max_queue = tonumber(ARGV[4])
local job_id = ARGV[5]
local job_key_prefix = ARGV[6]
local busy_retry_s = tonumber(ARGV[7])
local grace_s = tonumber(ARGV[8])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

if max_queue > 0 and redis.call('ZCARD', queue_key) >= max_queue then
  return {'queue_full', tostring(busy_retry_s)}
end

if max_in_flight > 0 then
  local live = 0
  local members = redis.call('ZRANGE', inflight_key, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id, admitted = members[i], tonumber(members[i + 1])
    local raw = redis.call('GET', job_key_prefix .. id)
    local alive
    if raw then
      local ok, record = pcall(cjson.decode, raw)
      alive = ok and (record.status == 'queued' or record.status == 'running')
    else
      alive = now - admitted < grace_s
    end
    if alive then live = live + 1 else redis.call('ZREM', inflight_key, id) end
  end
  if live >= max_in_flight then
    return {'too_many_in_flight', tostring(busy_retry_s)}
  end
end

if rate > 0 then
  local state = redis.call('HMGET', bucket_key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local last = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
  if tokens < 1 then
    return {'rate_limited', tostring((1 - tokens) / rate)}
  end
  redis.call('HSET', bucket_key, 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('EXPIRE', bucket_key, math.ceil(burst / rate) + 60)
end

if max_in_flight > 0 then
  redis.call('ZADD', inflight_key, now, job_id)
  redis.call('EXPIRE', inflight_key, 7 * 24 * 3600)
end
return {'admitted', '0'}
"""


class Verdict(StrEnum):
    admitted = "admitted"
    queue_full = "queue_full"
    """The global queue cap is reached (503)."""
    too_many_in_flight = "too_many_in_flight"
    """The key has ``max_in_flight`` unfinished jobs (429)."""
    rate_limited = "rate_limited"
    """The key's token bucket is empty (429)."""


@dataclass(frozen=True)
class LimitConfig:
    rate_per_s: float = 1.0
    """Sustained submissions per second and key (0 disables the bucket)."""
    burst: int = 10
    """Submissions a key may make at once after being idle."""
    max_in_flight: int = 10
    """Queued + running jobs per key (0 disables)."""
    max_queue_length: int = 1000
    """Queued jobs in the whole deployment (0 disables)."""

    @property
    def enforces_nothing(self) -> bool:
        """True when every check is disabled, so every submission is admitted."""
        return self.rate_per_s <= 0 and self.max_in_flight <= 0 and self.max_queue_length <= 0


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    retry_after_s: float
    """Suggested wait before trying again (0 when admitted)."""

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.admitted

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


class LimitKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}:queue"
        self.job_prefix = f"{prefix}:job:"

    def bucket(self, key_id: str) -> str:
        return f"{self.prefix}:bucket:{key_id}"

    def inflight(self, key_id: str) -> str:
        return f"{self.prefix}:inflight:{key_id}"


def _parse(reply: list) -> Admission:
    verdict, retry = (part.decode() if isinstance(part, bytes) else part for part in reply)
    return Admission(Verdict(verdict), float(retry))


ADMITTED = Admission(Verdict.admitted, 0.0)


class _Admitter:
    def __init__(self, config: LimitConfig, prefix: str) -> None:
        self.config = config
        self.keys = LimitKeys(prefix)

    def _call_args(self, key_id: str, job_id: str, busy_retry_s: float) -> tuple[list[str], list[str]]:
        c = self.config
        keys = [self.keys.bucket(key_id), self.keys.inflight(key_id), self.keys.queue]
        args = [
            repr(float(c.rate_per_s)),
            str(int(c.burst)),
            str(int(c.max_in_flight)),
            str(int(c.max_queue_length)),
            job_id,
            self.keys.job_prefix,
            repr(float(busy_retry_s)),
            repr(ADMISSION_GRACE_S),
        ]
        return keys, args


class Limiter(_Admitter):
    """Synchronous admission (tests, tools)."""

    def __init__(self, client: redis.Redis, config: LimitConfig, *, prefix: str) -> None:
        super().__init__(config, prefix)
        self._script = client.register_script(_ADMIT)

    def admit(self, key_id: str, job_id: str, *, busy_retry_s: float = 30.0) -> Admission:
        if self.config.enforces_nothing:
            return ADMITTED
        keys, args = self._call_args(key_id, job_id, busy_retry_s)
        return _parse(self._script(keys=keys, args=args))


class AsyncLimiter(_Admitter):
    """The API's admission, on ``redis.asyncio``."""

    def __init__(self, client: aredis.Redis, config: LimitConfig, *, prefix: str) -> None:
        super().__init__(config, prefix)
        self._script = client.register_script(_ADMIT)

    async def admit(self, key_id: str, job_id: str, *, busy_retry_s: float = 30.0) -> Admission:
        if self.config.enforces_nothing:
            return ADMITTED
        keys, args = self._call_args(key_id, job_id, busy_retry_s)
        return _parse(await self._script(keys=keys, args=args))
