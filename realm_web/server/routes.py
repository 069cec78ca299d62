"""The HTTP routes: every /v1 route's common frame (request id, drain, auth, errors, logs) and the handlers."""
from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from . import completion
from .auth import authenticate
from .context import Ctx
from .disconnect import ClientGone, unless_disconnected
from .embeddings import embed
from .encoding import error_response, json_response
from .errors import APIError, bad_request, model_not_found, server_error, too_large, unavailable
from .logs import LOGGER, new_request_id
from .schemas import parse_json
from .sse import SSEResponse

log = logging.getLogger(LOGGER)


class Routes:
    """The HTTP handlers of one RealmServer (`srv`: config, keys, models, limiter, metrics, requests)."""

    def __init__(self, srv) -> None:
        self.srv = srv

    async def _read_body(self, request: Request) -> dict:
        limit = self.srv.config.max_body
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

    async def _api(self, request: Request, endpoint: str, run, admin: bool | None = False) -> Response:
        """Common frame of every /v1 route: request id, drain check, auth, errors, logs, metrics."""
        srv = self.srv
        ctx = Ctx(new_request_id(request.headers.get("x-request-id")), endpoint, request.method, request.url.path)
        srv.requests.begin(ctx)
        streaming = False
        try:
            if srv.draining:
                raise unavailable("the server is shutting down and takes no new requests")
            auth = await srv.offload(authenticate, srv.keys, request.headers, None, admin)
            ctx.tenant, ctx.key_id = auth.tenant, auth.key_id
            resp = await run(ctx, auth)
            if isinstance(resp, SSEResponse):
                streaming = True   # the response ends the request (and calls requests.end)
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
                srv.requests.end(ctx)

    async def chat_completions(self, request: Request) -> Response:
        return await self._api(request, "chat.completions",
                               lambda ctx, auth: self._generate(request, ctx, auth, "chat.completions"))

    async def completions(self, request: Request) -> Response:
        return await self._api(request, "completions",
                               lambda ctx, auth: self._generate(request, ctx, auth, "completions"))

    async def _generate(self, request: Request, ctx: Ctx, auth, endpoint: str) -> Response:
        body = await self._read_body(request)
        gen = await unless_disconnected(completion.start(self.srv, ctx, auth, endpoint, body), request.receive)
        if gen.req.stream:
            return SSEResponse(self.srv.requests, gen, gen.req.include_usage)
        try:
            result = await unless_disconnected(gen.result(), request.receive)
        finally:
            gen.close()
        return json_response(result, ctx.request_id)

    async def embeddings(self, request: Request) -> Response:
        async def run(ctx, auth):
            body = await self._read_body(request)
            return json_response(await unless_disconnected(embed(self.srv, ctx, auth, body), request.receive),
                                 ctx.request_id)
        return await self._api(request, "embeddings", run)

    def _model_obj(self, mid: str) -> dict:
        w = self.srv.models.workers[mid]
        return {"id": mid, "object": "model", "created": w.created, "owned_by": "realm-web",
                "context_length": w.n_ctx, "embedding_dimensions": w.n_embd}

    async def list_models(self, request: Request) -> Response:
        async def run(ctx, auth):
            return json_response({"object": "list", "data": [self._model_obj(m) for m in self.srv.models.workers]},
                                 ctx.request_id)
        return await self._api(request, "models", run)

    async def get_model(self, request: Request) -> Response:
        async def run(ctx, auth):
            mid = request.path_params["model"]
            workers = self.srv.models.workers
            if mid not in workers:
                raise model_not_found(mid, list(workers))
            return json_response(self._model_obj(mid), ctx.request_id)
        return await self._api(request, "models", run)

    # -------------------------------------------------------- LoRA adapters
    def _adapters(self) -> list[dict]:
        out = []
        for w in self.srv.models.unique():
            for a in w.lora_adapters():
                out.append(dict(a, model=w.id))
        return out

    async def list_lora(self, request: Request) -> Response:
        async def run(ctx, auth):
            return json_response({"object": "list", "data": self._adapters()}, ctx.request_id)
        return await self._api(request, "lora-adapters", run)

    async def post_lora(self, request: Request) -> Response:
        """{"id", "path"}: load (on every model it fits); {"id", "unload": true}: unload. Admin keys
        (`realm api-key generate --admin`) and the keys of --admin-tenant tenants only."""
        import asyncio

        async def run(ctx, auth):
            if not auth.admin and auth.tenant not in self.srv.config.admin_tenants:
                raise APIError(403, f"Tenant '{auth.tenant}' may not load or unload LoRA adapters (use an admin "
                               f"key, or a tenant the server names with --admin-tenant).", code="forbidden")
            body = await self._read_body(request)
            aid = body.get("id")
            if not isinstance(aid, (str, int)) or isinstance(aid, bool) or aid == "":
                raise bad_request("Invalid 'id': a LoRA adapter id (string) is required.", param="id")
            aid = str(aid)
            if body.get("unload"):
                gone = [w.id for w in self.srv.models.unique() if w.unload_lora(aid)]
                if not gone:
                    raise APIError(404, f"No LoRA adapter '{aid}' is loaded.", param="id", code="not_found")
                return json_response({"id": aid, "unloaded": gone}, ctx.request_id)
            path = body.get("path")
            if not isinstance(path, str) or not path:
                raise bad_request("Invalid 'path': the adapter's GGUF file on the server is required.", param="path")
            try:
                fits = await asyncio.to_thread(self.srv.models.load_lora, aid, path)
            except ValueError as e:
                raise bad_request(str(e), param="path") from None
            return json_response({"id": aid, "path": path, "models": fits}, ctx.request_id)
        return await self._api(request, "lora-adapters", run, admin=None)

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        srv = self.srv
        if srv.load_error:
            return json_response({"status": "failed", "error": srv.load_error}, status=503)
        if srv.draining:
            return json_response({"status": "draining", "in_flight": srv.in_flight}, status=503)
        if not srv.loaded:
            return json_response({"status": "loading"}, status=503)
        return json_response({"status": "ready", "models": list(srv.models.workers)})

    async def metrics(self, request: Request) -> Response:
        # gauges are kept current by the scheduler threads (touching a model here could block the loop)
        m = self.srv.metrics
        if self.srv.config.metrics_auth:
            try:
                await self.srv.offload(authenticate, self.srv.keys, request.headers, None, True)
            except APIError as e:
                return error_response(e)
        return Response(m.render(), media_type=m.content_type)

    async def load_model(self, request: Request) -> Response:
        """POST /admin/models {"id": ID, "model": PATH | hf:OWNER/NAME/FILE | built-in name} (admin key)."""
        from starlette.concurrency import run_in_threadpool

        from ..hub import HubError

        async def run(ctx, auth):
            body = await self._read_body(request)
            mid, spec = body.get("id"), body.get("model")
            for name, v in (("id", mid), ("model", spec)):
                if not isinstance(v, str) or not v.strip():
                    raise bad_request(f"Missing or invalid '{name}': a non-empty string.", param=name)
            try:
                await run_in_threadpool(self.srv.models.add, mid, spec)
            except (ValueError, OSError, HubError) as e:
                raise bad_request(f"Could not load '{spec}' as '{mid}': {e}", param="model") from None
            return json_response(self._model_obj(mid), ctx.request_id)
        return await self._api(request, "admin.models", run, admin=True)

    async def unload_model(self, request: Request) -> Response:
        """DELETE /admin/models/{id} (admin key): its running requests end with 503."""
        from starlette.concurrency import run_in_threadpool

        async def run(ctx, auth):
            mid = request.path_params["model"]
            if mid not in self.srv.models.workers:
                raise model_not_found(mid, list(self.srv.models.workers))
            await run_in_threadpool(self.srv.models.remove, mid)
            return json_response({"id": mid, "object": "model", "deleted": True}, ctx.request_id)
        return await self._api(request, "admin.models", run, admin=True)

    async def usage(self, request: Request) -> Response:
        """GET /v1/usage?tenant=T&since=D (admin key): totals per tenant, key and model, with cost."""
        from .usage import parse_since, summary

        async def run(ctx, auth):
            q = request.query_params
            try:
                since = parse_since(q.get("since"))
            except ValueError as e:
                raise bad_request(str(e), param="since") from None
            rows = await self.srv.offload(summary, self.srv.keys.db, self.srv.requests.prices, since, q.get("tenant"))
            return json_response({"object": "list", "since": since, "data": rows}, ctx.request_id)
        return await self._api(request, "usage", run, admin=True)
