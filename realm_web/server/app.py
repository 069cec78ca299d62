"""`realm serve`'s ASGI application (Starlette, run by uvicorn): the server's state and its routes, assembled.

    POST /v1/chat/completions   POST /v1/completions   POST /v1/embeddings
    GET  /v1/models             GET  /v1/models/{id}
    GET  /v1/usage   POST /admin/models   DELETE /admin/models/{id}   (admin key)
    WS   /v1/stream             (the same requests, several per connection, cancellable)
    GET  /health   GET /ready   GET /metrics

See docs/SERVER.md. The jobs live in their own modules: routes (HTTP handlers),
ws (the WebSocket protocol), auth (keys, rate-limit admission), models (model
loading), completion and embeddings (requests -> scheduler jobs -> OpenAI
objects), sse and encoding (bytes on the wire), context (per-request logs and
metrics). `RealmServer.app` is the ASGI application.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from .config import ServerConfig
from .context import Requests
from .db import PostgresDatabase
from .encoding import error_response
from .errors import APIError, server_error
from .keys import KeyStore
from .logs import LOGGER
from .metrics import Metrics
from .models import Models, default_model_id
from .ratelimit import Limits, RateLimiter
from .routes import Routes
from .usage import Prices
from .ws import stream_ws

__all__ = ["RealmServer", "ServerConfig", "default_model_id"]

log = logging.getLogger(LOGGER)


class RealmServer:
    """The state one server process shares across requests, and its ASGI app."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        defaults = Limits(config.rpm, config.tpm)
        if config.redis_url:
            from .ratelimit_redis import RedisRateLimiter
            self.limiter = RedisRateLimiter(config.redis_url, defaults)
        else:
            self.limiter = RateLimiter(defaults)
        self.keys: KeyStore | None = None if config.no_auth else KeyStore(config.keys_path)
        self.models = Models(config, self.metrics)
        self.requests = Requests(self.metrics, self.keys.db if self.keys else None, Prices.load(config.prices_path))
        # a store or limiter over the network may stall (up to its connect timeout): keep that off the event loop
        self._remote = bool(config.redis_url) or isinstance(getattr(self.keys, "db", None), PostgresDatabase)
        self.draining = False
        self.app = self._build_app()

    # the runners (serve.py) and tests read these
    @property
    def workers(self):
        return self.models.workers

    @property
    def loaded(self) -> bool:
        return self.models.loaded

    @property
    def load_error(self) -> str | None:
        return self.models.load_error

    @property
    def in_flight(self) -> int:
        return self.requests.in_flight

    def load_models(self) -> None:
        self.models.load()

    def shutdown(self) -> None:
        self.models.shutdown()
        if self.keys:
            self.keys.close()
        close = getattr(self.limiter, "close", None)
        if close:
            close()

    def begin_drain(self) -> None:
        """Stop taking requests (503); in-flight ones go on. The runner decides when to exit."""
        if not self.draining:
            self.draining = True
            log.info("draining: no new requests; waiting for %d in flight", self.in_flight)

    async def offload(self, fn, *args):
        """fn(*args): in a worker thread when it may wait on PostgreSQL or Redis, else inline (SQLite is local)."""
        if self._remote:
            return await run_in_threadpool(fn, *args)
        return fn(*args)

    def cancel_all(self) -> None:
        self.models.cancel_all()

    def _build_app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(app):
            loop = asyncio.get_running_loop()
            if not self.loaded and not self.load_error:
                loop.run_in_executor(None, self.load_models)
            try:
                yield
            finally:
                self.cancel_all()
                await loop.run_in_executor(None, self.shutdown)

        async def http_error(request: Request, exc: HTTPException) -> Response:
            e = APIError(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}",
                         code="not_found" if exc.status_code == 404 else None)
            return error_response(e)

        async def any_error(request: Request, exc: Exception) -> Response:
            log.exception("unhandled error")
            return error_response(server_error(f"internal error: {type(exc).__name__}"))

        async def ws(websocket) -> None:
            await stream_ws(self, websocket)

        r = Routes(self)
        routes = [
            Route("/v1/chat/completions", r.chat_completions, methods=["POST"]),
            Route("/v1/completions", r.completions, methods=["POST"]),
            Route("/v1/embeddings", r.embeddings, methods=["POST"]),
            Route("/v1/models", r.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", r.get_model, methods=["GET"]),
            Route("/v1/usage", r.usage, methods=["GET"]),
            Route("/admin/models", r.load_model, methods=["POST"]),
            Route("/admin/models/{model:path}", r.unload_model, methods=["DELETE"]),
            WebSocketRoute("/v1/stream", ws),
            Route("/lora-adapters", r.list_lora, methods=["GET"]),
            Route("/lora-adapters", r.post_lora, methods=["POST"]),
            Route("/health", r.health, methods=["GET"]),
            Route("/ready", r.ready, methods=["GET"]),
            Route("/metrics", r.metrics, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan,
                         exception_handlers={HTTPException: http_error, Exception: any_error})
