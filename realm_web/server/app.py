"""The HTTP and WebSocket routes of `realm serve` (Starlette, run by uvicorn).

    POST /v1/chat/completions   POST /v1/completions   POST /v1/embeddings
    GET  /v1/models             GET  /v1/models/{id}
    WS   /v1/stream             (the same requests, several per connection, cancellable)
    GET  /health   GET /ready   GET /metrics

See docs/SERVER.md. `RealmServer` holds the state (models, keys, limits,
metrics); `RealmServer.app` is the ASGI application.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import __version__
from .errors import (APIError, bad_request, model_not_found, not_found, rate_limited, server_error, too_large,
                     unauthorized, unavailable)
from .keys import KeyStore
from .logs import LOGGER, new_request_id
from .metrics import Metrics
from .ratelimit import Limits, RateLimited, RateLimiter
from .scheduler import Job, ModelWorker
from .schemas import PARSERS, ChatRequest, EmbeddingRequest, parse_json

log = logging.getLogger(LOGGER)
FINGERPRINT = f"realm-web-{__version__}"
ANONYMOUS = "anonymous"
WS_MAX_CONCURRENT = 64      # requests running at once on one /v1/stream connection


@dataclass
class ServerConfig:
    models: list[tuple[str, str]] = field(default_factory=list)  # (id, path); empty: the default model
    host: str = "127.0.0.1"
    port: int = 8080
    keys_path: str | None = None        # None: keys.default_keys_path()
    no_auth: bool = False
    n_ctx: int | None = None            # per session; None: min(2048, the model's trained context)
    max_sessions: int = 32              # KV caches per model (busy + idle)
    prefill_chunk: int = 32             # prompt tokens per scheduling turn (<= 64, the core's batch)
    threads: int | None = None          # CPU threads per model (None: realm_web's default)
    idle_ttl: float = 600.0             # seconds before an idle session is freed
    rpm: int | None = None              # default requests/min per tenant (None: unlimited)
    tpm: int | None = None              # default generated tokens/min per tenant
    max_body: int = 1 << 20             # bytes
    grace: float = 30.0                 # SIGTERM: seconds to let in-flight requests finish
    log_format: str = "text"
    log_level: str = "info"


@dataclass
class Auth:
    tenant: str
    scope: str
    limits: Limits
    key_id: str | None = None


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


def _dumps(o: Any) -> str:
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def error_response(e: APIError, request_id: str | None = None) -> Response:
    headers = dict(e.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(_dumps(e.body()), status_code=e.status, headers=headers, media_type="application/json")


def json_response(obj: Any, request_id: str | None = None, status: int = 200) -> Response:
    return Response(_dumps(obj), status_code=status, media_type="application/json",
                    headers={"x-request-id": request_id} if request_id else None)


class ClientGone(Exception):
    pass


async def _wait_disconnect(receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


async def _unless_disconnected(coro, receive):
    """Await coro; raise ClientGone (cancelling it) if the client disconnects first."""
    task = asyncio.ensure_future(coro)
    watch = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise ClientGone()
    finally:
        watch.cancel()
        for t in (task, watch):
            if not t.done():
                try:
                    await t
                except BaseException:
                    pass


# ------------------------------------------------------------------ generation
class Generation:
    """An admitted chat or completion request: its job, and the OpenAI objects it yields."""

    def __init__(self, srv: "RealmServer", ctx: Ctx, req, worker: ModelWorker, job: Job, reservation) -> None:
        self.srv, self.ctx, self.req, self.worker, self.job = srv, ctx, req, worker, job
        self.reservation = reservation
        self.chat = isinstance(req, ChatRequest)
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + ctx.request_id.removeprefix("req_")
        self.created = int(time.time())
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self._closed = False

    async def events(self) -> AsyncIterator[tuple]:
        """("text", str) ... then ("done", finish_reason, usage); APIError on failure."""
        while True:
            ev = await self.job.events.get()
            kind = ev[0]
            if kind == "text":
                yield ev
            elif kind == "done":
                self.finish_reason, self.usage = ev[1], ev[2]
                self.ctx.finish_reason = ev[1]
                self.ctx.completion_tokens = ev[2]["completion_tokens"]
                if self.job.t_first is not None:
                    self.ctx.ttft = self.job.t_first - self.ctx.t0
                yield ev
                return
            elif kind == "error":
                raise ev[1]
            elif kind == "cancelled":
                raise unavailable("the request was cancelled" if ev[1] != "shutdown"
                                  else "the server shut down before this request finished")

    def _chunk(self, text: str | None = None, finish: str | None = None, role: bool = False) -> dict:
        if self.chat:
            delta: dict = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.ctx.model,
                "system_fingerprint": FINGERPRINT, "choices": [choice]}

    async def chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        if self.chat:
            yield self._chunk(role=True)
        async for ev in self.events():
            if ev[0] == "text":
                yield self._chunk(text=ev[1])
            else:
                yield self._chunk(finish=ev[1], text=None if self.chat else "")
                if include_usage:
                    c = self._chunk()
                    c["choices"] = []
                    c["usage"] = ev[2]
                    yield c

    async def result(self) -> dict:
        parts = []
        async for ev in self.events():
            if ev[0] == "text":
                parts.append(ev[1])
        text = "".join(parts)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "logprobs": None, "finish_reason": self.finish_reason}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish_reason}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.ctx.model,
                "system_fingerprint": FINGERPRINT, "choices": [choice], "usage": self.usage}

    def cancel(self, reason: str = "client") -> None:
        self.job.cancel(reason)

    def close(self) -> None:
        """Settle the rate-limit reservation; cancel the job if it is still running. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self.job.done:
            self.job.cancel("client")
        self.reservation.settle(self.job.generated)


# ---------------------------------------------------------------------- server
class RealmServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.limiter = RateLimiter(Limits(config.rpm, config.tpm))
        self.keys: KeyStore | None = None if config.no_auth else KeyStore(config.keys_path)
        self.workers: dict[str, ModelWorker] = {}   # model id -> worker (several ids may share one)
        self.loaded = False
        self.load_error: str | None = None
        self.draining = False
        self.in_flight = 0
        self.app = self._build_app()

    # ---------------------------------------------------------------- models
    def load_models(self) -> None:
        """Load every configured model (blocking; run off the event loop). Sets load_error on failure."""
        from ..default_model import default_model_path
        try:
            specs = list(self.config.models)
            if not specs:
                p = str(default_model_path())
                specs = [(default_model_id(p), p)]
            by_file: dict[tuple, ModelWorker] = {}
            for mid, path in specs:
                if mid in self.workers:
                    raise ValueError(f"model id {mid!r} is given twice")
                st = os.stat(path)
                fkey = (st.st_dev, st.st_ino)     # one worker per file, however it is spelled
                w = by_file.get(fkey)
                if w is None:
                    t = time.perf_counter()
                    w = ModelWorker(mid, path, n_ctx=self.config.n_ctx, max_sessions=self.config.max_sessions,
                                    idle_ttl=self.config.idle_ttl, metrics=self.metrics,
                                    prefill_chunk=self.config.prefill_chunk, threads=self.config.threads)
                    by_file[fkey] = w
                    log.info("model loaded", extra={"model": mid, "path": path, "n_ctx": w.n_ctx,
                                                    "max_sessions": self.config.max_sessions,
                                                    "seconds": round(time.perf_counter() - t, 2)})
                self.workers[mid] = w
            self.loaded = True
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("loading the models failed: %s", self.load_error)

    def _unique_workers(self) -> list[ModelWorker]:
        seen, out = set(), []
        for w in self.workers.values():
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    def shutdown(self) -> None:
        for w in self._unique_workers():
            w.stop()
        self.workers.clear()
        if self.keys:
            self.keys.close()

    def begin_drain(self) -> None:
        """Stop taking requests (503); in-flight ones go on. The runner decides when to exit."""
        if not self.draining:
            self.draining = True
            log.info("draining: no new requests; waiting for %d in flight", self.in_flight)

    def cancel_all(self) -> None:
        for w in self._unique_workers():
            w.cancel_all("shutdown")

    def _worker(self, model: str) -> ModelWorker:
        w = self.workers.get(model)
        if w is None:
            if not self.loaded:
                raise unavailable("the models are still loading; retry shortly (see GET /ready)")
            raise model_not_found(model, list(self.workers))
        return w

    # ---------------------------------------------------------------- auth
    def authenticate(self, headers, query=None) -> Auth:
        if self.keys is None:
            return Auth(ANONYMOUS, "tenant:" + ANONYMOUS, Limits())
        key = None
        h = headers.get("authorization")
        if h:
            scheme, _, val = h.partition(" ")
            key = val.strip() if scheme.lower() == "bearer" else None
            if key is None:
                raise unauthorized("The Authorization header must be 'Bearer <API key>'.")
        key = key or headers.get("x-api-key") or headers.get("api-key") or (query or {}).get("api_key")
        if not key:
            raise unauthorized("You didn't provide an API key. Pass it as 'Authorization: Bearer <key>' "
                               "(create one with `realm api-key generate --tenant NAME`).")
        rec = self.keys.authenticate(key)
        if rec is None:
            shown = key[:13] + "..." + key[-4:] if len(key) > 20 else "***"
            raise unauthorized(f"Incorrect API key provided: {shown}. The key is unknown, disabled or revoked.")
        if rec.rpm is not None or rec.tpm is not None:
            lim = Limits(rec.rpm, rec.tpm)
            tlim = Limits(*self.keys.tenant_limits(rec.tenant))
            return Auth(rec.tenant, "key:" + rec.id, lim.merged(tlim), rec.id)
        return Auth(rec.tenant, "tenant:" + rec.tenant, Limits(*self.keys.tenant_limits(rec.tenant)), rec.id)

    def reserve(self, auth: Auth, max_tokens: int):
        try:
            return self.limiter.acquire(auth.scope, auth.limits, max_tokens)
        except RateLimited as e:
            self.metrics.rate_limited.labels(auth.tenant, e.kind).inc()
            what = "requests per minute" if e.kind == "requests" else "generated tokens per minute"
            raise rate_limited(f"Rate limit reached for tenant '{auth.tenant}': {e.limit} {what}. "
                               f"Try again in {e.retry_after:.1f} s.", e.retry_after, e.kind) from None

    # ------------------------------------------------------------- pipeline
    async def start_generation(self, ctx: Ctx, auth: Auth, endpoint: str, body: dict) -> Generation:
        req = PARSERS[endpoint](body)
        worker = self._worker(req.model)
        ctx.model = worker.id
        ctx.stream = req.stream
        sp = req.sampling
        if sp.max_tokens is not None and sp.max_tokens > worker.n_ctx:
            raise bad_request(f"Invalid '{sp.max_tokens_param}': {sp.max_tokens} is more than this model's context "
                              f"of {worker.n_ctx} tokens.", param=sp.max_tokens_param)
        if isinstance(req, ChatRequest):
            text = worker.render_chat(req.messages)
            job = Job("generate", auth.tenant, endpoint, text=text, chat=True, sampling=sp, param="messages",
                      t_arrival=ctx.t0)
        elif isinstance(req.prompt, str):
            job = Job("generate", auth.tenant, endpoint, text=req.prompt, sampling=sp, t_arrival=ctx.t0)
        else:
            job = Job("generate", auth.tenant, endpoint, ids=req.prompt, sampling=sp, t_arrival=ctx.t0)
        reservation = self.reserve(auth, sp.max_tokens or worker.n_ctx)
        try:
            worker.submit(job)
            ev = await job.events.get()
        except BaseException:
            job.cancel("client")
            reservation.settle(0)
            raise
        if ev[0] == "error":
            reservation.settle(0)
            raise ev[1]
        ctx.prompt_tokens = ev[1]
        return Generation(self, ctx, req, worker, job, reservation)

    async def embed(self, ctx: Ctx, auth: Auth, body: dict) -> dict:
        req: EmbeddingRequest = PARSERS["embeddings"](body)
        worker = self._worker(req.model)
        ctx.model = worker.id
        if req.dimensions is not None and req.dimensions != worker.n_embd:
            raise bad_request(f"Invalid 'dimensions': this model's embeddings have {worker.n_embd} dimensions "
                              f"(got {req.dimensions}).", param="dimensions")
        reservation = self.reserve(auth, 0)
        job = Job("embed", auth.tenant, "embeddings", inputs=req.inputs, param="input", t_arrival=ctx.t0)
        vecs: dict[int, Any] = {}
        try:
            worker.submit(job)
            while True:
                ev = await job.events.get()
                if ev[0] == "accepted":
                    ctx.prompt_tokens = ev[1]
                elif ev[0] == "embedding":
                    vecs[ev[1]] = ev[2]
                elif ev[0] == "done":
                    usage = ev[2]
                    break
                elif ev[0] == "error":
                    raise ev[1]
                elif ev[0] == "cancelled":
                    raise unavailable("the request was cancelled")
        finally:
            if not job.done:
                job.cancel("client")
            reservation.settle(0)
        data = []
        for i in range(len(req.inputs)):
            v = vecs[i]
            emb = base64.b64encode(v.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" \
                else [float(x) for x in v]
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self.metrics.prompt_tokens.labels(auth.tenant, worker.id).inc(usage["prompt_tokens"])
        return {"object": "list", "data": data, "model": worker.id, "usage": usage}

    # ---------------------------------------------------------------- http
    def _ctx(self, request: Request, endpoint: str) -> Ctx:
        return Ctx(new_request_id(request.headers.get("x-request-id")), endpoint, request.method, request.url.path)

    def _begin(self, ctx: Ctx) -> None:
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def _end(self, ctx: Ctx) -> None:
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

    async def _read_body(self, request: Request) -> dict:
        limit = self.config.max_body
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                if int(cl) > limit:
                    raise too_large(limit)
            except ValueError:
                raise bad_request("Invalid Content-Length header.") from None
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise too_large(limit)
        return parse_json(bytes(buf))

    async def _api(self, request: Request, endpoint: str, run) -> Response:
        """Common frame of every /v1 route: request id, drain check, auth, errors, logs, metrics."""
        ctx = self._ctx(request, endpoint)
        self._begin(ctx)
        streaming = False
        try:
            if self.draining:
                raise unavailable("the server is shutting down and takes no new requests")
            auth = self.authenticate(request.headers)
            ctx.tenant = auth.tenant
            resp = await run(ctx, auth)
            if isinstance(resp, SSEResponse):
                streaming = True   # the response ends the request (and calls _end)
            return resp
        except APIError as e:
            ctx.status = e.status
            ctx.error = e.message
            return error_response(e, ctx.request_id)
        except (ClientGone, ClientDisconnect):
            ctx.status = 499
            ctx.error = "client disconnected"
            return Response(status_code=499)
        except Exception as e:
            log.exception("unhandled error", extra={"request_id": ctx.request_id})
            ctx.status = 500
            ctx.error = str(e)
            return error_response(server_error(f"internal error: {type(e).__name__}"), ctx.request_id)
        finally:
            if not streaming:
                self._end(ctx)

    async def chat_completions(self, request: Request) -> Response:
        return await self._api(request, "chat.completions", lambda ctx, auth: self._generate(request, ctx, auth,
                                                                                             "chat.completions"))

    async def completions(self, request: Request) -> Response:
        return await self._api(request, "completions", lambda ctx, auth: self._generate(request, ctx, auth,
                                                                                        "completions"))

    async def _generate(self, request: Request, ctx: Ctx, auth: Auth, endpoint: str) -> Response:
        body = await self._read_body(request)
        gen = await _unless_disconnected(self.start_generation(ctx, auth, endpoint, body), request.receive)
        if gen.req.stream:
            return SSEResponse(self, gen, gen.req.include_usage)
        try:
            result = await _unless_disconnected(gen.result(), request.receive)
        finally:
            gen.close()
        return json_response(result, ctx.request_id)

    async def embeddings(self, request: Request) -> Response:
        async def run(ctx, auth):
            body = await self._read_body(request)
            return json_response(await _unless_disconnected(self.embed(ctx, auth, body), request.receive),
                                 ctx.request_id)
        return await self._api(request, "embeddings", run)

    def _model_obj(self, mid: str) -> dict:
        w = self.workers[mid]
        return {"id": mid, "object": "model", "created": w.created, "owned_by": "realm-web",
                "context_length": w.n_ctx, "embedding_dimensions": w.n_embd}

    async def list_models(self, request: Request) -> Response:
        async def run(ctx, auth):
            return json_response({"object": "list", "data": [self._model_obj(m) for m in self.workers]},
                                 ctx.request_id)
        return await self._api(request, "models", run)

    async def get_model(self, request: Request) -> Response:
        async def run(ctx, auth):
            mid = request.path_params["model"]
            if mid not in self.workers:
                raise model_not_found(mid, list(self.workers))
            return json_response(self._model_obj(mid), ctx.request_id)
        return await self._api(request, "models", run)

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        if self.load_error:
            return json_response({"status": "failed", "error": self.load_error}, status=503)
        if self.draining:
            return json_response({"status": "draining", "in_flight": self.in_flight}, status=503)
        if not self.loaded:
            return json_response({"status": "loading"}, status=503)
        return json_response({"status": "ready", "models": list(self.workers)})

    async def metrics_route(self, request: Request) -> Response:
        # gauges are kept current by the scheduler threads (touching a model here could block the loop)
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # ----------------------------------------------------------- websocket
    async def stream_ws(self, ws: WebSocket) -> None:
        """/v1/stream: JSON messages; see docs/SERVER.md for the protocol."""
        await ws.accept()
        send_lock = asyncio.Lock()

        async def send(obj: dict) -> None:
            async with send_lock:
                await ws.send_text(_dumps(obj))

        try:
            auth = self.authenticate(ws.headers, ws.query_params)
        except APIError as e:
            await send({"type": "error", "id": None, "status": e.status, **e.body()})
            await ws.close(code=1008, reason="unauthorized")
            return
        self.metrics.ws_connections.inc()
        running: dict[str, tuple[asyncio.Task, list]] = {}
        try:
            while True:
                try:
                    raw = await ws.receive_text()
                except WebSocketDisconnect:
                    break
                except KeyError:   # a binary frame
                    await send({"type": "error", "id": None, "status": 400,
                                **bad_request("Send JSON text frames.").body()})
                    continue
                try:
                    msg = parse_json(raw.encode("utf-8", "replace"))
                except APIError as e:
                    await send({"type": "error", "id": None, "status": e.status, **e.body()})
                    continue
                rid = msg.get("id")
                if rid is not None and not isinstance(rid, (str, int)):
                    await send({"type": "error", "id": None, "status": 400,
                                **bad_request("Invalid 'id': expected a string.", param="id").body()})
                    continue
                rid = str(rid) if rid is not None else None
                mtype = msg.get("type", "request")
                if mtype == "ping":
                    await send({"type": "pong", "id": rid})
                elif mtype == "cancel":
                    entry = running.get(rid)
                    if entry is None:
                        await send({"type": "error", "id": rid, "status": 404,
                                    **not_found(f"No running request with id {rid!r}.").body()})
                    else:
                        holder = entry[1]
                        if holder:
                            holder[0].cancel("client")
                        entry[0].cancel()
                elif mtype == "request":
                    if rid is None:
                        rid = "r" + str(len(running) + 1) + "-" + new_request_id()[4:12]
                    if len(running) >= WS_MAX_CONCURRENT:
                        await send({"type": "error", "id": rid, "status": 429,
                                    **APIError(429, f"At most {WS_MAX_CONCURRENT} requests may run at once on one "
                                               "connection.", code="too_many_requests").body()})
                        continue
                    if rid in running:
                        await send({"type": "error", "id": rid, "status": 400,
                                    **bad_request(f"A request with id {rid!r} is already running.",
                                                  param="id").body()})
                        continue
                    holder: list = []
                    task = asyncio.create_task(self._ws_request(ws, send, auth, rid, msg, holder))
                    running[rid] = (task, holder)
                    task.add_done_callback(lambda t, rid=rid: running.pop(rid, None))
                else:
                    await send({"type": "error", "id": rid, "status": 400,
                                **bad_request(f"Invalid 'type': {mtype!r}; expected 'request', 'cancel' or 'ping'.",
                                              param="type").body()})
        finally:
            self.metrics.ws_connections.dec()
            for task, holder in list(running.values()):
                if holder:
                    holder[0].cancel("client")
                task.cancel()
            for task, _ in list(running.values()):
                try:
                    await task
                except BaseException:
                    pass

    _WS_ENDPOINTS = {"chat.completions": "chat.completions", "/v1/chat/completions": "chat.completions",
                     "chat": "chat.completions", "completions": "completions", "/v1/completions": "completions",
                     "embeddings": "embeddings", "/v1/embeddings": "embeddings"}

    async def _ws_request(self, ws, send, auth: Auth, rid: str, msg: dict, holder: list) -> None:
        endpoint = self._WS_ENDPOINTS.get(msg.get("endpoint", "chat.completions"))
        ctx = Ctx(new_request_id(), endpoint or "unknown", "WS", "/v1/stream", transport="websocket")
        ctx.tenant = auth.tenant
        self._begin(ctx)
        gen = None
        try:
            if self.draining:
                raise unavailable("the server is shutting down and takes no new requests")
            if endpoint is None:
                raise bad_request(f"Invalid 'endpoint': {msg.get('endpoint')!r}; expected 'chat.completions', "
                                  "'completions' or 'embeddings'.", param="endpoint")
            body = msg.get("body")
            if not isinstance(body, dict):
                raise bad_request("Invalid 'body': expected an object (the request body).", param="body")
            if endpoint == "embeddings":
                await send({"type": "result", "id": rid, "data": await self.embed(ctx, auth, body)})
                await send({"type": "done", "id": rid})
                return
            gen = await self.start_generation(ctx, auth, endpoint, body)
            holder.append(gen)
            ctx.stream = True
            async for chunk in gen.chunks(include_usage=False):
                await send({"type": "chunk", "id": rid, "data": chunk})
            await send({"type": "done", "id": rid, "finish_reason": gen.finish_reason, "usage": gen.usage})
        except asyncio.CancelledError:
            ctx.status = 499
            ctx.error = "cancelled"
            if gen is not None:
                gen.cancel("client")
            try:
                await send({"type": "cancelled", "id": rid})
            except Exception:
                pass
        except APIError as e:
            ctx.status = e.status
            ctx.error = e.message
            try:
                await send({"type": "error", "id": rid, "status": e.status, **e.body()})
            except Exception:
                pass
        except Exception as e:
            if isinstance(e, (WebSocketDisconnect, OSError)) or type(e).__name__.startswith("ConnectionClosed"):
                ctx.status = 499
            else:
                log.exception("unhandled error", extra={"request_id": ctx.request_id})
                ctx.status = 500
            ctx.error = str(e)
        finally:
            if gen is not None:
                gen.close()
            self._end(ctx)

    # ----------------------------------------------------------------- app
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

        routes = [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
            WebSocketRoute("/v1/stream", self.stream_ws),
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.ready, methods=["GET"]),
            Route("/metrics", self.metrics_route, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan,
                         exception_handlers={HTTPException: http_error, Exception: any_error})


class SSEResponse(Response):
    """Server-sent events for a streaming generation. Ends with `data: [DONE]`.

    Listens for the client's disconnect while streaming: the generation is cancelled
    at once (its session goes back to the pool), not at the next failed write."""

    media_type = "text/event-stream"

    def __init__(self, srv: RealmServer, gen: Generation, include_usage: bool) -> None:
        self.srv, self.gen, self.include_usage = srv, gen, include_usage
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no",
                           "x-request-id": gen.ctx.request_id})

    async def __call__(self, scope, receive, send) -> None:
        ctx = self.gen.ctx

        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            try:
                async for chunk in self.gen.chunks(self.include_usage):
                    await send({"type": "http.response.body", "body": f"data: {_dumps(chunk)}\n\n".encode(),
                                "more_body": True})
            except APIError as e:
                ctx.status = e.status
                ctx.error = e.message
                await send({"type": "http.response.body", "body": f"data: {_dumps(e.body())}\n\n".encode(),
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

        task = asyncio.ensure_future(stream())
        watch = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                self.gen.cancel("client")
                task.cancel()
                ctx.status, ctx.error = 499, "client disconnected"
            elif task.exception() is not None:
                exc = task.exception()
                self.gen.cancel("client")
                if isinstance(exc, (OSError, ClientDisconnect)):
                    ctx.status, ctx.error = 499, f"client disconnected ({type(exc).__name__})"
                else:
                    log.error("stream failed", exc_info=exc, extra={"request_id": ctx.request_id})
                    ctx.status, ctx.error = 500, f"stream failed: {type(exc).__name__}"
        finally:
            watch.cancel()
            for t in (task, watch):
                if not t.done():
                    try:
                        await t
                    except BaseException:
                        pass
            self.gen.close()
            self.srv._end(ctx)


def default_model_id(path: str) -> str:
    """A model's id from its file name: SmolLM2-135M-Instruct.Q4_1.gguf -> SmolLM2-135M-Instruct.Q4_1."""
    name = os.path.basename(path)
    return name[:-5] if name.lower().endswith(".gguf") else name
