"""Server-sent events for a streaming completion."""
from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .completion import Completion
from .disconnect import settle, wait_disconnect
from .encoding import SSE_DONE, sse_event
from .errors import APIError
from .logs import LOGGER

log = logging.getLogger(LOGGER)


class SSEResponse(Response):
    """Server-sent events for a streaming generation. Ends with `data: [DONE]`.

    Listens for the client's disconnect while streaming: the generation is cancelled
    at once (its session goes back to the pool), not at the next failed write.
    Ends the request's bookkeeping (requests.end) itself, when the stream ends."""

    media_type = "text/event-stream"

    def __init__(self, requests, gen: Completion, include_usage: bool) -> None:
        self.requests, self.gen, self.include_usage = requests, gen, include_usage
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
                    await send({"type": "http.response.body", "body": sse_event(chunk), "more_body": True})
            except APIError as e:
                ctx.status = e.status
                ctx.error = e.message
                await send({"type": "http.response.body", "body": sse_event(e.body()), "more_body": True})
            await send({"type": "http.response.body", "body": SSE_DONE, "more_body": False})

        task = asyncio.ensure_future(stream())
        watch = asyncio.ensure_future(wait_disconnect(receive))
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
            await settle(task, watch)
            self.gen.close()
            self.requests.end(ctx)
