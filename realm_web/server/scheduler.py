"""One scheduler thread per model: sessions pooled per tenant, work round-robin.

A model's wasm instance runs one call at a time, so every call into it for the
server's requests happens on that model's scheduler thread, which interleaves
the active requests one unit of work at a time: a prompt chunk (32 tokens by
default, at most the core's batch of 64) or one decode step (`realm_session_step`).
Thirty-two streams therefore advance in lockstep, and a new request waits at
most one round (one unit per active request) for its first prompt chunk.

Sessions (a KV cache each) are pooled per (tenant, model). A request takes the
idle session of its tenant whose cached tokens share the longest prefix with its
prompt and evaluates only the rest (prefix reuse); without one it gets a fresh
session, evicting the least recently used idle session of another tenant when
the pool is full. A session never changes tenant: eviction frees it. When every
session is busy, requests wait in a FIFO queue (`realm_queue_depth`).

The asyncio side talks to a job through `Job.events` (an asyncio.Queue fed with
loop.call_soon_threadsafe) and `Job.cancel()`, which takes effect before the
job's next unit of work; its session goes back to the pool at once.
"""
from __future__ import annotations

import asyncio
import codecs
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import chat as chat_mod
from .. import store
from ..stops import StopFilter
from ..core_model import CoreModel, SamplerSettings, Session
from ..errors import RealmError
from .errors import APIError, bad_request, server_error, unavailable
from .schemas import Sampling

log = logging.getLogger("realm_web.server")

CHUNK = 32            # default prompt tokens per unit of work (the core's batch is 64)
DEFAULT_CTX = 2048    # per-session context unless configured (capped by the model's trained context)


# ---------------------------------------------------------------------- jobs
QUEUED, PREFILL, DECODE, DONE = "queued", "prefill", "decode", "done"


class Job:
    """One request's work on one model. Created on the event loop; run by the scheduler."""

    def __init__(self, kind: str, tenant: str, endpoint: str, *, text: str | None = None,
                 ids: list[int] | None = None, chat: bool = False, sampling: Sampling | None = None,
                 inputs: list | None = None, param: str = "prompt", t_arrival: float | None = None) -> None:
        self.kind = kind                  # "generate" or "embed"
        self.tenant = tenant
        self.endpoint = endpoint
        self.text = text
        self.ids = ids
        self.chat = chat
        self.sampling = sampling
        self.inputs = inputs
        self.param = param
        self.t_arrival = t_arrival if t_arrival is not None else time.perf_counter()
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.cancel_reason = ""
        self.state = QUEUED
        self.worker: "ModelWorker | None" = None
        # progress
        self.entry: _Entry | None = None
        self.pos = 0
        self.n_past = 0
        self.cached = 0
        self.generated = 0
        self.pending = -1
        self.t_first: float | None = None
        self.t_decode0: float | None = None
        self.finish_reason = ""
        self.embed_ids: list[list[int]] = []
        self.embed_k = 0
        self.embed_tokens = 0

    def emit(self, *ev: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, ev)
        except RuntimeError:
            pass  # the event loop is gone (shutdown)

    def cancel(self, reason: str = "client") -> None:
        """Stop this job before its next unit of work; safe from any thread, idempotent."""
        if not self.cancelled and self.state != DONE:
            self.cancelled = True
            self.cancel_reason = reason
            if self.worker is not None:
                self.worker.wake()

    @property
    def done(self) -> bool:
        return self.state == DONE


# ---------------------------------------------------------------------- pool
@dataclass
class _Entry:
    session: Session
    tenant: str
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SessionPool:
    """Sessions of one model, each owned by one tenant for its whole life."""

    def __init__(self, model: CoreModel, n_ctx: int, max_sessions: int) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.max_sessions = max(1, max_sessions)
        self.entries: list[_Entry] = []

    def busy(self) -> int:
        return sum(e.busy for e in self.entries)

    def can_admit(self) -> bool:
        return len(self.entries) < self.max_sessions or any(not e.busy for e in self.entries)

    def acquire(self, tenant: str, ids: list[int]) -> _Entry | None:
        mine = [e for e in self.entries if not e.busy and e.tenant == tenant]
        if mine:
            e = max(mine, key=lambda e: (_common_prefix(e.tokens, ids), e.last_used))
        elif len(self.entries) < self.max_sessions:
            e = _Entry(Session(self.model, self.n_ctx), tenant)
            self.entries.append(e)
        else:
            others = [e for e in self.entries if not e.busy]
            if not others:
                return None
            self._evict(min(others, key=lambda e: e.last_used))
            e = _Entry(Session(self.model, self.n_ctx), tenant)
            self.entries.append(e)
        e.busy = True
        return e

    def release(self, e: _Entry) -> None:
        try:
            e.tokens = e.session.tokens()
        except RealmError:
            e.tokens = []
            e.session.truncate(0)
        e.busy = False
        e.last_used = time.monotonic()

    def _evict(self, e: _Entry) -> None:
        self.entries.remove(e)
        e.session.close()

    def evict_idle(self, older_than: float) -> int:
        now = time.monotonic()
        old = [e for e in self.entries if not e.busy and now - e.last_used > older_than]
        for e in old:
            self._evict(e)
        return len(old)

    def close(self) -> None:
        for e in list(self.entries):
            self._evict(e)


# -------------------------------------------------------------------- worker
class ModelWorker:
    """A loaded model (shared weights via realm_web.store), its session pool and scheduler thread."""

    def __init__(self, model_id: str, path: str, n_ctx: int | None = None, max_sessions: int = 32,
                 idle_ttl: float = 600.0, metrics=None, prefill_chunk: int = CHUNK,
                 threads: int | None = None) -> None:
        self.id = model_id
        self.path = str(path)
        self.chunk = max(1, min(64, int(prefill_chunk)))
        self.metrics = metrics
        self.model = store.acquire(path, threads=threads)
        try:
            info = self.model.info
            train = info.n_ctx_train or DEFAULT_CTX
            self.n_ctx = int(n_ctx) if n_ctx else min(DEFAULT_CTX, train)
            self.n_embd = info.n_embd
            self.n_vocab = info.n_vocab
            self.created = int(time.time())
            meta = self.model.metadata()
            toks = meta.get("tokenizer.ggml.tokens") or []

            def tok_text(key):
                i = meta.get(key)
                return toks[i] if isinstance(i, int) and 0 <= i < len(toks) else ""
            self.template = meta.get("tokenizer.chat_template")
            self.bos_text = tok_text("tokenizer.ggml.bos_token_id")
            self.eos_text = tok_text("tokenizer.ggml.eos_token_id")
            self.weights_bytes = sum(t.nbytes for t in self.model.tensors())
            self.pool = SessionPool(self.model, self.n_ctx, max_sessions)
            self.idle_ttl = idle_ttl
            c = self.model.core
            with c.lock:
                self._ids_buf = c.alloc(4 * self.chunk)
                self._acc_buf = c.alloc(4 * self.n_embd)
        except BaseException:
            store.release(self.model)
            raise
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._cv = threading.Condition()
        self._inbox: list[Job] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._rr: collections.deque[Job] = collections.deque()
        self._live: set[Job] = set()         # every submitted job not yet done (cancel_all's list)
        self._stopping = False
        self._rate: collections.deque[float] = collections.deque()   # times of recent generated tokens
        self._last_gauges = 0.0
        self._thread = threading.Thread(target=self._run, name=f"realm-scheduler[{model_id}]", daemon=True)
        self._thread.start()
        self._gauges(force=True)

    # ------------------------------------------------------------ the loop side
    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text of a chat, from the model's own template (a 400 if the template refuses)."""
        try:
            return chat_mod.render(self.template, messages, True, bos_token=self.bos_text, eos_token=self.eos_text)
        except RealmError as e:
            raise bad_request(str(e), param="messages") from None

    def submit(self, job: Job) -> Job:
        with self._cv:
            if self._stopping:
                raise unavailable("the server is shutting down")
            job.worker = self
            self._live.add(job)
            self._inbox.append(job)
            self._cv.notify()
        return job

    def wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def stats(self) -> dict:
        return {"sessions": len(self.pool.entries), "busy": self.pool.busy(), "queued": len(self._waiting)
                + len(self._inbox), "active": len(self._rr)}

    def cancel_all(self, reason: str = "shutdown") -> None:
        with self._cv:
            jobs = list(self._live)
        for j in jobs:
            j.cancel(reason)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (failing whatever is left), free the sessions, release the model."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("scheduler for %s did not stop within %.0f s", self.id, timeout)
            return
        with self.model.core.lock:
            self.pool.close()
            self.model.core.free(self._ids_buf)
            self.model.core.free(self._acc_buf)
        store.release(self.model)

    # ------------------------------------------------------- the scheduler thread
    def _run(self) -> None:
        while True:
            with self._cv:
                idle = (not self._stopping and not self._inbox and not self._rr
                        and not (self._waiting and self.pool.can_admit()))
                if idle:
                    self._cv.wait(1.0)
                if self._stopping:
                    break
                inbox, self._inbox = self._inbox, []
            if idle:
                self._housekeeping()   # outside the condition: it takes the instance lock
            for job in inbox:
                self._accept(job)
            self._admit()
            if self._rr:
                job = self._rr.popleft()
                if job.cancelled:
                    self._drop(job)
                else:
                    try:
                        done = self._unit(job)
                    except APIError as e:
                        self._fail(job, e)
                    except Exception as e:  # a core failure: this request fails, the server goes on
                        log.exception("request failed in the core (model %s)", self.id)
                        self._fail(job, server_error(f"generation failed: {e}"))
                    else:
                        if not done:
                            self._rr.append(job)
            self._gauges()
        # stopping: everything still here fails
        with self._cv:
            left = list(self._live)
            self._inbox, self._waiting, self._rr = [], collections.deque(), collections.deque()
        for job in left:
            if job.entry is not None:
                self.pool.release(job.entry)
                job.entry = None
            self._retire(job)
            job.emit("error", unavailable("the server shut down before this request finished"))

    def _retire(self, job: Job) -> None:
        job.state = DONE
        with self._cv:
            self._live.discard(job)

    def _housekeeping(self) -> None:
        if self.idle_ttl and self.pool.entries:
            with self.model.core.lock:
                if self.pool.evict_idle(self.idle_ttl):
                    self._gauges(force=True)
        self._gauges()

    def _gauges(self, force: bool = False) -> None:
        m = self.metrics
        if m is None:
            return
        now = time.monotonic()
        if not force and now - self._last_gauges < 0.25:
            return
        self._last_gauges = now
        m.queue_depth.labels(self.id).set(len(self._waiting) + len(self._inbox))
        m.active.labels(self.id).set(len(self._rr))
        m.sessions.labels(self.id).set(len(self.pool.entries))
        while self._rate and now - self._rate[0] > 5.0:
            self._rate.popleft()
        span = min(5.0, now - self._rate[0]) if self._rate else 0.0
        m.tokens_per_second.labels(self.id).set(len(self._rate) / max(span, 1.0) if self._rate else 0.0)
        m.model_weights.labels(self.id).set(self.weights_bytes)
        with self.model.core.lock:
            m.model_memory.labels(self.id).set(self.model.core.memory_bytes())

    def _piece(self, tok: int) -> bytes:
        p = self._pieces.get(tok)
        if p is None:
            p = self._pieces[tok] = self.model.piece(tok, special=False)
        return p

    def _is_eog(self, tok: int) -> bool:
        v = self._eog.get(tok)
        if v is None:
            v = self._eog[tok] = self.model.is_eog(tok)
        return v

    def _accept(self, job: Job) -> None:
        """Tokenize and check a new job; it then waits for a session (or fails at once)."""
        if job.cancelled:
            self._retire(job)
            return
        try:
            if job.kind == "generate":
                if job.ids is None:
                    if job.chat:
                        ids = self.model.tokenize(job.text, add_special=False, parse_special=True)
                        info = self.model.info
                        if info.add_bos and info.bos >= 0 and (not ids or ids[0] != info.bos):
                            ids = [info.bos] + ids
                    else:
                        ids = self.model.tokenize(job.text, add_special=True, parse_special=True)
                    job.ids = ids
                self._check_ids(job.ids, job.param)
                if len(job.ids) >= self.n_ctx:
                    raise APIError(400, f"This model's maximum context length is {self.n_ctx} tokens, but the prompt "
                                   f"has {len(job.ids)} tokens (at least one must be left to generate). Shorten "
                                   f"'{job.param}'.", param=job.param, code="context_length_exceeded")
                job.emit("accepted", len(job.ids))
            else:
                out = []
                for i, x in enumerate(job.inputs):
                    ids = self.model.tokenize(x, add_special=True, parse_special=False) if isinstance(x, str) else x
                    name = f"input[{i}]" if len(job.inputs) > 1 else "input"
                    self._check_ids(ids, name)
                    if len(ids) > self.n_ctx:
                        raise APIError(400, f"This model's maximum context length is {self.n_ctx} tokens, but "
                                       f"'{name}' has {len(ids)} tokens.", param="input",
                                       code="context_length_exceeded")
                    out.append(ids)
                job.embed_ids = out
                job.emit("accepted", sum(len(x) for x in out))
        except APIError as e:
            self._fail(job, e, queued=True)
            return
        except RealmError as e:
            self._fail(job, bad_request(str(e), param=job.param), queued=True)
            return
        self._waiting.append(job)

    def _check_ids(self, ids: list[int], param: str) -> None:
        if not ids:
            raise bad_request(f"Invalid '{param}': the prompt is empty (it has no tokens).", param=param)
        bad = next((t for t in ids if not 0 <= t < self.n_vocab), None)
        if bad is not None:
            raise bad_request(f"Invalid '{param}': token id {bad} is out of range (vocabulary of {self.n_vocab}).",
                              param=param)

    def _admit(self) -> None:
        while self._waiting:
            job = self._waiting[0]
            if job.cancelled:
                self._waiting.popleft()
                self._drop(job)
                continue
            with self.model.core.lock:
                key = job.ids if job.kind == "generate" else []
                entry = self.pool.acquire(job.tenant, key)
                if entry is None:
                    return
                self._waiting.popleft()
                job.entry = entry
                s = entry.session
                if job.kind == "generate":
                    sp = job.sampling
                    seed = sp.seed if sp.seed is not None and sp.seed >= 0 else time.time_ns()
                    s.set_sampler(SamplerSettings(
                        temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p, min_p=sp.min_p,
                        repeat_penalty=sp.repeat_penalty, repeat_last_n=sp.repeat_last_n,
                        frequency_penalty=sp.frequency_penalty, presence_penalty=sp.presence_penalty,
                        seed=seed))
                    n = min(_common_prefix(entry.tokens, job.ids), len(job.ids) - 1)
                    s.truncate(n)
                    job.pos = job.cached = job.n_past = n
                    job.decoder = codecs.getincrementaldecoder("utf-8")("replace")
                    job.filter = StopFilter(sp.stop)
                    job.max_tokens = sp.max_tokens or self.n_ctx
                else:
                    s.truncate(0)
                    job.pos = 0
                    self.model.core.view(self._acc_buf, np.float32, self.n_embd)[:] = 0
            job.state = PREFILL
            self._rr.append(job)
            if self.metrics and job.kind == "generate":
                self.metrics.prompt_tokens.labels(job.tenant, self.id).inc(len(job.ids))
                self.metrics.cached_tokens.labels(job.tenant, self.id).inc(job.cached)

    def _unit(self, job: Job) -> bool:
        """One unit of work; True when the job is finished."""
        s = job.entry.session
        if job.kind == "embed":
            return self._embed_unit(job)
        if job.state == PREFILL:
            chunk = job.ids[job.pos:job.pos + self.chunk]
            s.eval(chunk)
            job.pos += len(chunk)
            job.n_past = job.pos
            if job.pos < len(job.ids):
                return False
            job.state = DECODE
            job.t_decode0 = time.perf_counter()
            return self._consume(job, s.sample())
        tok = s.step(job.pending)
        job.n_past += 1
        return self._consume(job, tok)

    def _consume(self, job: Job, tok: int) -> bool:
        """Handle a freshly sampled token: stop, or emit it and keep it for the next step."""
        if self._is_eog(tok):
            return self._finish(job, "stop")
        now = time.perf_counter()
        job.generated += 1
        self._rate.append(time.monotonic())
        m = self.metrics
        if job.t_first is None:
            job.t_first = now
            if m:
                m.ttft.labels(self.id, job.endpoint).observe(now - job.t_arrival)
        if m:
            m.generated_tokens.labels(job.tenant, self.id).inc()
        text = job.filter.push(job.decoder.decode(self._piece(tok)))
        if text:
            job.emit("text", text)
        if job.filter.hit:
            return self._finish(job, "stop", flush=False)
        if job.generated >= job.max_tokens or job.n_past >= self.n_ctx:
            return self._finish(job, "length")
        job.pending = tok
        return False

    def _embed_unit(self, job: Job) -> bool:
        ids = job.embed_ids[job.embed_k]
        chunk = ids[job.pos:job.pos + self.chunk]
        c = self.model.core
        with c.lock:
            c.view(self._ids_buf, np.int32, len(chunk))[:] = chunk
            if not c.call("realm_session_embed", job.entry.session.handle, self._ids_buf, len(chunk), self._acc_buf):
                raise RealmError(c.last_error())
            job.pos += len(chunk)
            if job.pos < len(ids):
                return False
            vec = c.view(self._acc_buf, np.float32, self.n_embd).astype(np.float64)
            c.view(self._acc_buf, np.float32, self.n_embd)[:] = 0
            job.entry.session.truncate(0)
        vec /= len(ids)                       # mean over the input's tokens
        norm = float(np.sqrt((vec * vec).sum()))
        if norm > 0:
            vec /= norm                        # L2-normalised
        job.emit("embedding", job.embed_k, vec.astype(np.float32))
        job.embed_tokens += len(ids)
        job.embed_k += 1
        job.pos = 0
        if job.embed_k < len(job.embed_ids):
            return False
        self._retire(job)
        with c.lock:
            self.pool.release(job.entry)
        job.entry = None
        job.emit("done", "stop", {"prompt_tokens": job.embed_tokens, "total_tokens": job.embed_tokens})
        return True

    def _finish(self, job: Job, reason: str, flush: bool = True) -> bool:
        if flush:
            tail = job.filter.push(job.decoder.decode(b"", final=True))
            if not job.filter.hit:
                tail += job.filter.flush()
            if tail:
                job.emit("text", tail)
        job.finish_reason = reason
        self._retire(job)
        with self.model.core.lock:
            self.pool.release(job.entry)
        job.entry = None
        if self.metrics and job.t_decode0 is not None and job.generated > 1:
            dt = time.perf_counter() - job.t_decode0
            if dt > 0:
                self.metrics.request_tps.labels(self.id).observe((job.generated - 1) / dt)
        usage = {"prompt_tokens": len(job.ids), "completion_tokens": job.generated,
                 "total_tokens": len(job.ids) + job.generated,
                 "prompt_tokens_details": {"cached_tokens": job.cached}}
        job.emit("done", reason, usage)
        self._gauges(force=True)
        return True

    def _drop(self, job: Job) -> None:
        """A cancelled job leaves: its session goes back to the pool at once."""
        if job.entry is not None:
            with self.model.core.lock:
                self.pool.release(job.entry)
            job.entry = None
        self._retire(job)
        if self.metrics:
            self.metrics.cancelled.labels(self.id, job.cancel_reason or "client").inc()
        job.emit("cancelled", job.cancel_reason)
        self._gauges(force=True)

    def _fail(self, job: Job, err: APIError, queued: bool = False) -> None:
        if job.entry is not None:
            with self.model.core.lock:
                self.pool.release(job.entry)
            job.entry = None
        self._retire(job)
        job.emit("error", err)
        self._gauges(force=True)
