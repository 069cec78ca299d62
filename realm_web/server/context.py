"""One request's bookkeeping (Ctx), the count in flight, and each finished request's log line and metrics."""
from __future__ import annotations

import logging
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
    model: str = "-"
    status: int = 200
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    ttft: float | None = None
    error: str | None = None
    transport: str = "http"


class Requests:
    """Requests in flight (the drain waits for 0); begin() and end() bracket every request once."""

    def __init__(self, metrics) -> None:
        self.metrics = metrics
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
