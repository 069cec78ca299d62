"""WS /v1/stream: several requests per connection, each named by the client's id, cancellable.
The protocol is in docs/SERVER.md."""
from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from . import completion
from .auth import Auth, authenticate
from .context import Ctx
from .embeddings import embed
from .encoding import dumps
from .errors import APIError, bad_request, not_found, unavailable
from .logs import LOGGER, new_request_id
from .schemas import parse_json

log = logging.getLogger(LOGGER)

MAX_CONCURRENT = 64      # requests running at once on one connection

ENDPOINTS = {"chat.completions": "chat.completions", "/v1/chat/completions": "chat.completions",
             "chat": "chat.completions", "completions": "completions", "/v1/completions": "completions",
             "embeddings": "embeddings", "/v1/embeddings": "embeddings"}


def _error(rid, e: APIError) -> dict:
    return {"type": "error", "id": rid, "status": e.status, **e.body()}


async def stream_ws(srv, ws: WebSocket) -> None:
    """One connection: read messages, start, cancel and answer requests until it closes."""
    await ws.accept()
    send_lock = asyncio.Lock()

    async def send(obj: dict) -> None:
        async with send_lock:
            await ws.send_text(dumps(obj))

    try:
        auth = await srv.offload(authenticate, srv.keys, ws.headers, ws.query_params)
    except APIError as e:
        await send(_error(None, e))
        await ws.close(code=1008, reason="unauthorized")
        return
    srv.metrics.ws_connections.inc()
    running: dict[str, tuple[asyncio.Task, list]] = {}
    try:
        while True:
            try:
                raw = await ws.receive_text()
            except WebSocketDisconnect:
                break
            except KeyError:   # a binary frame
                await send(_error(None, bad_request("Send JSON text frames.")))
                continue
            try:
                msg = parse_json(raw.encode("utf-8", "replace"))
            except APIError as e:
                await send(_error(None, e))
                continue
            rid = msg.get("id")
            if rid is not None and not isinstance(rid, (str, int)):
                await send(_error(None, bad_request("Invalid 'id': expected a string.", param="id")))
                continue
            rid = str(rid) if rid is not None else None
            mtype = msg.get("type", "request")
            if mtype == "ping":
                await send({"type": "pong", "id": rid})
            elif mtype == "cancel":
                entry = running.get(rid)
                if entry is None:
                    await send(_error(rid, not_found(f"No running request with id {rid!r}.")))
                else:
                    holder = entry[1]
                    if holder:
                        holder[0].cancel("client")
                    entry[0].cancel()
            elif mtype == "request":
                if rid is None:
                    rid = "r" + str(len(running) + 1) + "-" + new_request_id()[4:12]
                if len(running) >= MAX_CONCURRENT:
                    await send(_error(rid, APIError(429, f"At most {MAX_CONCURRENT} requests may run at once on "
                                                    "one connection.", code="too_many_requests")))
                    continue
                if rid in running:
                    await send(_error(rid, bad_request(f"A request with id {rid!r} is already running.",
                                                       param="id")))
                    continue
                holder: list = []
                task = asyncio.create_task(_request(srv, send, auth, rid, msg, holder))
                running[rid] = (task, holder)
                task.add_done_callback(lambda t, rid=rid: running.pop(rid, None))
            else:
                await send(_error(rid, bad_request(f"Invalid 'type': {mtype!r}; expected 'request', 'cancel' or "
                                                   "'ping'.", param="type")))
    finally:
        srv.metrics.ws_connections.dec()
        for task, holder in list(running.values()):
            if holder:
                holder[0].cancel("client")
            task.cancel()
        for task, _ in list(running.values()):
            try:
                await task
            except BaseException:
                pass


async def _request(srv, send, auth: Auth, rid: str, msg: dict, holder: list) -> None:
    """One request of a connection; `holder` gets its Completion (for cancel)."""
    endpoint = ENDPOINTS.get(msg.get("endpoint", "chat.completions"))
    ctx = Ctx(new_request_id(), endpoint or "unknown", "WS", "/v1/stream", transport="websocket")
    ctx.tenant, ctx.key_id = auth.tenant, auth.key_id
    srv.requests.begin(ctx)
    gen = None
    try:
        if srv.draining:
            raise unavailable("the server is shutting down and takes no new requests")
        if endpoint is None:
            raise bad_request(f"Invalid 'endpoint': {msg.get('endpoint')!r}; expected 'chat.completions', "
                              "'completions' or 'embeddings'.", param="endpoint")
        body = msg.get("body")
        if not isinstance(body, dict):
            raise bad_request("Invalid 'body': expected an object (the request body).", param="body")
        if endpoint == "embeddings":
            await send({"type": "result", "id": rid, "data": await embed(srv, ctx, auth, body)})
            await send({"type": "done", "id": rid})
            return
        gen = await completion.start(srv, ctx, auth, endpoint, body)
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
            await send(_error(rid, e))
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
        srv.requests.end(ctx)
