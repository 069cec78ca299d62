"""Chat and text completions: a request becomes a scheduler Job; its events become OpenAI objects."""
from __future__ import annotations

import time
from typing import AsyncIterator

from .. import __version__
from .auth import Auth, reserve
from .context import Ctx
from .errors import bad_request, unavailable
from .scheduler import Job, ModelWorker
from .schemas import PARSERS, ChatRequest

FINGERPRINT = f"realm-web-{__version__}"


class Completion:
    """An admitted chat or completion request: its job, and the OpenAI objects it yields."""

    def __init__(self, ctx: Ctx, req, worker: ModelWorker, job: Job, reservation) -> None:
        self.ctx, self.req, self.worker, self.job = ctx, req, worker, job
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


async def start(srv, ctx: Ctx, auth: Auth, endpoint: str, body: dict) -> Completion:
    """Validate, admit (rate limits) and queue a chat or completion; returns once the
    scheduler accepted it (tokenized, fits the context) or raises its APIError."""
    req = PARSERS[endpoint](body)
    worker = srv.models.get(req.model)
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
    reservation = reserve(srv.limiter, srv.metrics, auth, sp.max_tokens or worker.n_ctx)
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
    return Completion(ctx, req, worker, job, reservation)
