"""Token buckets in Redis (`realm serve --redis redis://...`): one limit across every replica.

The same buckets as ratelimit.RateLimiter (a minute's allowance, continuous
refill, both buckets taken at once or neither, unused tokens given back), but
kept in Redis hashes {level, t, cap} and changed only by Lua scripts, which
Redis runs atomically: two replicas can never overdraw a bucket. Time is
Redis's own clock (TIME), so replicas' clocks need not agree. A bucket idle
for two minutes expires (a missing bucket is a full one).

Nothing else is shared through Redis. When Redis cannot be reached, requests
that have a limit fail with a 503 that names it (a limit that cannot be checked
is not waived); requests without limits never call Redis.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from .ratelimit import Limits, RateLimited, Reservation

# KEYS: request bucket, token bucket. ARGV: rpm, tpm (0 = unlimited), tokens wanted.
# Returns {0, kind, wait_ms, limit} when refused, {1, tokens taken} when admitted.
_ACQUIRE = """
local tm = redis.call('TIME')
local now = tonumber(tm[1]) + tonumber(tm[2]) / 1e6
local function load(key, cap)
  if cap <= 0 then return nil end
  local h = redis.call('HMGET', key, 'level', 't', 'cap')
  local level, t, oldcap = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  if level == nil then return cap end
  if oldcap ~= cap then level = level / oldcap * cap end   -- limits changed: keep the used fraction
  if now > t then level = math.min(cap, level + (now - t) * cap / 60) end
  return level
end
local function save(key, cap, level)
  if cap > 0 then
    redis.call('HSET', key, 'level', tostring(level), 't', tostring(now), 'cap', tostring(cap))
    redis.call('EXPIRE', key, 120)
  end
end
local rpm, tpm, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rl, tl = load(KEYS[1], rpm), load(KEYS[2], tpm)
if tl == nil then want = 0 else want = math.min(want, tpm) end
local kind, wait, limit = nil, 0, 0
if rl ~= nil and rl < 1 then kind, wait, limit = 'requests', (1 - rl) * 60 / rpm, rpm end
if tl ~= nil and tl < want then
  local w = (want - tl) * 60 / tpm
  if w > wait then kind, wait, limit = 'tokens', w, tpm end
end
if kind then return {0, kind, tostring(math.ceil(wait * 1000)), limit} end
if rl ~= nil then save(KEYS[1], rpm, rl - 1) end
if tl ~= nil then save(KEYS[2], tpm, tl - want) end
return {1, tostring(want)}
"""

# KEYS: token bucket. ARGV: tokens to give back (negative: charge more).
_GIVE_BACK = """
local h = redis.call('HMGET', KEYS[1], 'level', 't', 'cap')
local level, t, cap = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
if level == nil then return 0 end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) + tonumber(tm[2]) / 1e6
if now > t then level = math.min(cap, level + (now - t) * cap / 60) end
level = math.min(cap, level + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'level', tostring(level), 't', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""


class LimiterUnavailable(ConnectionError):
    """Redis cannot be reached."""


class _Unlimited:
    def _give_back(self, scope: str, n: float) -> None:
        pass


_UNLIMITED = _Unlimited()


class RedisRateLimiter:
    """RateLimiter's interface (acquire -> Reservation, RateLimited), with the buckets in Redis."""

    def __init__(self, url: str, defaults: Limits = Limits(), prefix: str = "realm:rl:") -> None:
        try:
            import redis
        except ImportError:
            raise RuntimeError("--redis needs the redis client:  pip install redis") from None
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self.defaults = defaults
        self.prefix = prefix
        u = urlsplit(url)
        self.name = f"Redis at {u.hostname or 'localhost'}:{u.port or 6379}"
        self._r = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._give = self._r.register_script(_GIVE_BACK)
        self._call(self._r.ping)   # fail at start on a wrong URL

    def _call(self, fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except self._errors as e:
            raise LimiterUnavailable(f"the rate limiter ({self.name}) is unreachable: {e}") from None

    def acquire(self, scope: str, limits: Limits, max_tokens: int) -> Reservation:
        lim = limits.merged(self.defaults)
        if not (lim.rpm and lim.rpm > 0) and not (lim.tpm and lim.tpm > 0):
            return Reservation(_UNLIMITED, scope, 0.0)   # nothing to check: no round trip
        keys = [self.prefix + scope + ":requests", self.prefix + scope + ":tokens"]
        res = self._call(self._acquire, keys=keys, args=[lim.rpm or 0, lim.tpm or 0, int(max_tokens)])
        if int(res[0]) == 0:
            kind = res[1].decode() if isinstance(res[1], bytes) else res[1]
            raise RateLimited(kind, int(res[2]) / 1000.0, int(res[3]))
        return Reservation(self, scope, float(res[1]))

    def _give_back(self, scope: str, n: float) -> None:
        if n:   # (a request admitted without a token bucket gives back to a missing key: a no-op in the script)
            try:
                self._call(self._give, keys=[self.prefix + scope + ":tokens"], args=[n])
            except LimiterUnavailable:
                pass   # tokens not given back only make the limit stricter for a while

    def close(self) -> None:
        self._r.close()
