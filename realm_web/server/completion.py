"""Chat and text completions: a request becomes one scheduler Job per choice (n); their
events become OpenAI objects."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import AsyncIterator

from .. import __version__
from .auth import Auth, reserve
from . import tool_calls
from .context import Ctx
from .errors import bad_request, unavailable
from .logprobs import CompletionLogprobs, chat_content
from .scheduler import Job, ModelWorker
from .schemas import PARSERS, ChatRequest

FINGERPRINT = f"realm-web-{__version__}"


class Completion:
    """An admitted chat or completion request: its jobs (one per choice), and the OpenAI objects they yield."""

    def __init__(self, ctx: Ctx, req, worker: ModelWorker, jobs: list[Job], reservation) -> None:
        self.ctx, self.req, self.worker, self.jobs = ctx, req, worker, jobs
        self.reservation = reservation
        self.chat = isinstance(req, ChatRequest)
        self.tools = self.chat and req.tool_choice is not None   # answers are JSON, turned into tool_calls
        self.logprobs = req.sampling.logprobs is not None
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + ctx.request_id.removeprefix("req_")
        self.created = int(time.time())
        self.finishes: list[str | None] = [None] * len(jobs)
        self.usages: list[dict | None] = [None] * len(jobs)
        self.usage: dict | None = None           # all choices together, once every one is done
        self.finish_reason: str | None = None    # choice 0's
        self._lp = [CompletionLogprobs() for _ in jobs]
        self._closed = False

    @property
    def job(self) -> Job:
        return self.jobs[0]

    async def events(self) -> AsyncIterator[tuple[int, tuple]]:
        """(choice, ("text", str, logprob entries)) ... and (choice, ("done", finish_reason, usage))
        for every choice, as they come; APIError on the first failure (the others are cancelled)."""
        pending: dict[asyncio.Future, int] = {}

        def arm(i: int) -> None:
            pending[asyncio.ensure_future(self.jobs[i].events.get())] = i
        for i in range(len(self.jobs)):
            arm(i)
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: pending[f]):
                    i = pending.pop(f)
                    ev = f.result()
                    kind = ev[0]
                    if kind == "text":
                        arm(i)
                        yield i, ev
                    elif kind == "done":
                        self.finishes[i], self.usages[i] = ev[1], ev[2]
                        yield i, ev
                    elif kind == "error":
                        raise ev[1]
                    elif kind == "cancelled":
                        raise unavailable("the request was cancelled" if ev[1] != "shutdown"
                                          else "the server shut down before this request finished")
                    else:
                        arm(i)
            self._settled()
        finally:
            for f in pending:
                f.cancel()

    def _settled(self) -> None:
        u0 = self.usages[0]
        gen = sum(u["completion_tokens"] for u in self.usages)
        self.usage = {"prompt_tokens": u0["prompt_tokens"], "completion_tokens": gen,
                      "total_tokens": u0["prompt_tokens"] + gen,
                      "prompt_tokens_details": u0.get("prompt_tokens_details", {"cached_tokens": 0})}
        self.finish_reason = self.finishes[0]
        self.ctx.finish_reason = self.finish_reason
        self.ctx.completion_tokens = gen
        self.ctx.cached_tokens = self.usage["prompt_tokens_details"].get("cached_tokens", 0)
        firsts = [j.t_first for j in self.jobs if j.t_first is not None]
        if firsts:
            self.ctx.ttft = min(firsts) - self.ctx.t0

    def _logprobs(self, i: int, entries) -> dict | None:
        if not self.logprobs:
            return None
        return {"content": chat_content(entries), "refusal": None} if self.chat else self._lp[i].part(entries)

    def _chunk(self, i: int = 0, text: str | None = None, finish: str | None = None, role: bool = False,
               entries=()) -> dict:
        lp = self._logprobs(i, entries) if entries else None
        if self.chat:
            delta: dict = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            choice = {"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": i, "text": text or "", "logprobs": lp, "finish_reason": finish}
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.ctx.model,
                "system_fingerprint": FINGERPRINT, "choices": [choice]}

    async def chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        if self.chat:
            for i in range(len(self.jobs)):
                yield self._chunk(i, role=True)
        held = [[] for _ in self.jobs]   # tool answers: whole before they become deltas
        async for i, ev in self.events():
            if ev[0] == "text" and self.tools:
                held[i].append(ev[1])
            elif ev[0] == "text":
                yield self._chunk(i, text=ev[1], entries=ev[2])
            elif self.tools:
                deltas, called = tool_calls.deltas("".join(held[i]), self.req.tool_format)
                for d in deltas:
                    c = self._chunk(i)
                    c["choices"][0]["delta"] = d
                    yield c
                yield self._chunk(i, finish=self._finish(ev[1], called))
            else:
                yield self._chunk(i, finish=ev[1], text=None if self.chat else "")
        if include_usage:
            c = self._chunk()
            c["choices"] = []
            c["usage"] = self.usage
            yield c

    async def result(self) -> dict:
        texts = [[] for _ in self.jobs]
        entries = [[] for _ in self.jobs]
        async for i, ev in self.events():
            if ev[0] == "text":
                texts[i].append(ev[1])
                entries[i] += ev[2]
        choices = []
        for i in range(len(self.jobs)):
            text = "".join(texts[i])
            lp = self._logprobs(i, entries[i])   # (None without logprobs)
            if self.tools:
                msg, called = tool_calls.message(text, self.req.tool_format)
                choices.append({"index": i, "message": msg, "logprobs": lp,
                                "finish_reason": self._finish(self.finishes[i], called)})
            elif self.chat:
                choices.append({"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                                "logprobs": lp, "finish_reason": self.finishes[i]})
            else:
                choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": self.finishes[i]})
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.ctx.model, "system_fingerprint": FINGERPRINT,
                "choices": choices, "usage": self.usage}

    def _finish(self, reason: str | None, called: bool) -> str | None:
        """A finished answer that calls tools ends with "tool_calls" (as OpenAI's)."""
        return "tool_calls" if called and reason == "stop" else reason

    def cancel(self, reason: str = "client") -> None:
        for j in self.jobs:
            j.cancel(reason)

    def close(self) -> None:
        """Settle the rate-limit reservation; cancel jobs still running. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for j in self.jobs:
            if not j.done:
                j.cancel("client")
        self.reservation.settle(sum(j.generated for j in self.jobs))


def _choice_sampling(sp, i: int):
    """Choice i's sampling: choice 0 is what n=1 gives; the others draw from seed + i."""
    if i == 0:
        return sp
    return dataclasses.replace(sp, settings=dataclasses.replace(sp.settings, seed=(sp.settings.seed + i) % (1 << 64)))


async def start(srv, ctx: Ctx, auth: Auth, endpoint: str, body: dict) -> Completion:
    """Validate, admit (rate limits) and queue a chat or completion (n jobs); returns once the
    scheduler accepted them (tokenized, fit the context) or raises the first APIError."""
    req = PARSERS[endpoint](body)
    worker = srv.models.get(req.model)
    ctx.model = worker.id
    ctx.stream = req.stream
    sp = req.sampling
    if sp.max_tokens is not None and sp.max_tokens > worker.n_ctx:
        raise bad_request(f"Invalid '{sp.max_tokens_param}': {sp.max_tokens} is more than this model's context "
                          f"of {worker.n_ctx} tokens.", param=sp.max_tokens_param)
    if isinstance(req, ChatRequest):
        messages, extra = tool_calls.render_args(req, worker.template_args.get("template"))
        extra = {**req.template_kwargs, **extra}   # (the tools' arguments are the server's own)
        kw = dict(text=worker.render_chat(messages, **extra), chat=True, param="messages")
    elif isinstance(req.prompt, str):
        kw = dict(text=req.prompt)
    else:
        kw = dict(ids=req.prompt)
    jobs = [Job("generate", auth.tenant, endpoint, sampling=_choice_sampling(sp, i), t_arrival=ctx.t0, **kw)
            for i in range(sp.n)]
    for j in jobs:   # the request's adapters, else its tenant's default (the key store), else none
        j.lora = sp.lora if sp.lora is not None else (auth.lora or [])
    reservation = await srv.offload(reserve, srv.limiter, srv.metrics, auth, (sp.max_tokens or worker.n_ctx) * sp.n)
    try:
        for j in jobs:
            worker.submit(j)
        evs = [await j.events.get() for j in jobs]
    except BaseException:
        for j in jobs:
            j.cancel("client")
        reservation.settle(0)
        raise
    bad = next((ev for ev in evs if ev[0] == "error"), None)
    if bad is not None:
        for j in jobs:
            j.cancel("client")
        reservation.settle(0)
        raise bad[1]
    ctx.prompt_tokens = evs[0][1]
    return Completion(ctx, req, worker, jobs, reservation)
