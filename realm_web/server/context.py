"""One request's bookkeeping (Ctx), the count in flight, and each finished request's log line and metrics."""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

from .logs import LOGGER

log = logging.getLogger(LOGGER)


@dataclass
class Ctx:
    """One request's bookkeeping (logs, metrics)."""
    request_id: str
    endpoint: str
    method: str = "POST"
    path: str = ""
    t0: float = field(default_factory=time.perf_counter)
    tenant: str = "-"
    key_id: str | None = None
    model: str = "-"
    status: int = 200
    stream: bool = False
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    ttft: float | None = None
    error: str | None = None
    transport: str = "http"
    # the usage row's key: ours, never the client's X-Request-Id (a reused one must not hide a request)
    usage_id: str = field(default_factory=lambda: "u_" + secrets.token_hex(12))


class Requests:
    """Requests in flight (the drain waits for 0); begin() and end() bracket every request once.

    usage_db (the key store's database, or None under --no-auth) gets one usage row per request that reached
    a model; prices gives the cost counted in realm_cost_usd."""

    def __init__(self, metrics, usage_db=None, prices=None) -> None:
        self.metrics = metrics
        self.usage_db = usage_db
        self.prices = prices
        self.in_flight = 0

    def begin(self, ctx: Ctx) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def end(self, ctx: Ctx) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)
        dt = time.perf_counter() - ctx.t0
        status = str(ctx.status)
        self.metrics.requests.labels(ctx.tenant, ctx.model, ctx.endpoint, status).inc()
        if ctx.model != "-":
            self.metrics.latency.labels(ctx.model, ctx.endpoint).observe(dt)
            if ctx.prompt_tokens is not None:
                self._meter(ctx, dt)
        extra = {"request_id": ctx.request_id, "method": ctx.method, "path": ctx.path, "tenant": ctx.tenant,
                 "model": ctx.model, "status": ctx.status, "duration_ms": round(dt * 1000, 1)}
        if ctx.transport != "http":
            extra["transport"] = ctx.transport
        if ctx.prompt_tokens is not None:
            extra["prompt_tokens"] = ctx.prompt_tokens
        if ctx.completion_tokens is not None:
            extra.update(completion_tokens=ctx.completion_tokens, finish_reason=ctx.finish_reason, stream=ctx.stream)
        if ctx.ttft is not None:
            extra["ttft_ms"] = round(ctx.ttft * 1000, 1)
        if ctx.error:
            extra["error"] = ctx.error
        log.info("request", extra=extra)

    def _meter(self, ctx: Ctx, dt: float) -> None:
        p, c, g = ctx.prompt_tokens or 0, ctx.cached_tokens or 0, ctx.completion_tokens or 0
        if self.prices is not None:
            self.metrics.cost.labels(ctx.tenant, ctx.model).inc(self.prices.cost(ctx.model, p, c, g))
        if self.usage_db is None:
            return
        from .usage import record
        try:
            record(self.usage_db, ctx.usage_id, ctx.tenant, ctx.key_id, ctx.model, ctx.endpoint, ctx.status,
                   p, c, g, dt)
        except Exception as e:   # the answer is sent; a lost row is logged and counted, never raised
            self.metrics.usage_errors.inc()
            log.error("usage not recorded: %s", e, extra={"request_id": ctx.request_id})
