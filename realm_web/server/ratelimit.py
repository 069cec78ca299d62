"""Token buckets per tenant: requests per minute and generated tokens per minute.

A bucket holds up to one minute's allowance and refills continuously. A
request is admitted only when its tenant's request bucket holds 1 and its
token bucket holds the request's `max_tokens` (capped at the bucket's size);
both are taken at once, under one lock, so concurrent requests can never
overdraw a bucket. When the generation ends, the tokens it did not use go back
to the bucket. A refused request learns how long until it would be admitted
(`Retry-After`).

Limits come from the key (if it has its own), else from the tenant's row in the
keys file, else from the server's defaults; 0 or None means unlimited. A key with
its own limits gets its own buckets; other keys of a tenant share the tenant's.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None   # requests per minute; None/0 = unlimited
    tpm: int | None = None   # generated tokens per minute; None/0 = unlimited

    def merged(self, fallback: "Limits") -> "Limits":
        return Limits(self.rpm if self.rpm is not None else fallback.rpm,
                      self.tpm if self.tpm is not None else fallback.tpm)


class Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.t = now

    def refill(self, now: float) -> None:
        if now > self.t:
            self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
            self.t = now

    def wait_for(self, n: float) -> float:
        """Seconds until the bucket holds n (n <= capacity)."""
        return 0.0 if self.level >= n else (n - self.level) / self.rate


class RateLimited(Exception):
    def __init__(self, kind: str, retry_after: float, limit: int) -> None:
        super().__init__(kind)
        self.kind = kind              # "requests" or "tokens"
        self.retry_after = retry_after
        self.limit = limit


class Reservation:
    """Tokens taken for one request; settle() gives back what it did not use."""

    def __init__(self, limiter: "RateLimiter", scope: str, tokens: float) -> None:
        self._limiter = limiter
        self._scope = scope
        self.tokens = tokens
        self._settled = False

    def settle(self, used: int) -> None:
        if self._settled:
            return
        self._settled = True
        self._limiter._give_back(self._scope, self.tokens - used)


class RateLimiter:
    def __init__(self, defaults: Limits = Limits(), clock=time.monotonic) -> None:
        self.defaults = defaults
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, Bucket]] = {}

    def _bucket(self, scope: str, kind: str, per_minute: int | None, now: float) -> Bucket | None:
        b = self._buckets.setdefault(scope, {})
        if not per_minute or per_minute <= 0:
            b.pop(kind, None)
            return None
        cur = b.get(kind)
        if cur is None or cur.capacity != per_minute:
            fresh = Bucket(per_minute, now)
            if cur is not None:  # limits changed: keep the used fraction
                cur.refill(now)
                fresh.level = min(fresh.capacity, cur.level / cur.capacity * fresh.capacity)
            b[kind] = cur = fresh
        cur.refill(now)
        return cur

    def acquire(self, scope: str, limits: Limits, max_tokens: int) -> Reservation:
        """Take one request and up to max_tokens tokens, or raise RateLimited (taking nothing)."""
        lim = limits.merged(self.defaults)
        with self._lock:
            now = self.clock()
            rb = self._bucket(scope, "requests", lim.rpm, now)
            tb = self._bucket(scope, "tokens", lim.tpm, now)
            want = min(float(max_tokens), tb.capacity) if tb else 0.0
            waits = []
            if rb and rb.level < 1:
                waits.append(("requests", rb.wait_for(1), lim.rpm))
            if tb and tb.level < want:
                waits.append(("tokens", tb.wait_for(want), lim.tpm))
            if waits:
                kind, wait, limit = max(waits, key=lambda w: w[1])
                raise RateLimited(kind, wait, limit)
            if rb:
                rb.level -= 1
            if tb:
                tb.level -= want
            return Reservation(self, scope, want)

    def _give_back(self, scope: str, n: float) -> None:
        with self._lock:
            tb = self._buckets.get(scope, {}).get("tokens")
            if tb is not None and n:
                tb.refill(self.clock())
                tb.level = min(tb.capacity, tb.level + n)   # n < 0 (used more than reserved) charges
