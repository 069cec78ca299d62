"""One scheduler thread per model: sessions pooled per tenant, continuous batching.

A model's wasm instance runs one call at a time, so every call into it for the
server's requests happens on that model's scheduler thread. Each turn of that
thread is one step: every decoding stream's next token and prompt chunks of the
streams still prefilling (`--prefill-chunk` tokens each at most), within the
`--batch-tokens` budget, go into ONE forward pass (`CoreModel.step_batch`,
realm_batch_step): every weight matrix is read once per step for all streams,
and each stream's tokens are bit for bit what it would get alone. realm_web/batching.py
decides which rows go in (decode first, tenants interleaved); a request that
arrives joins at the next step, a finished or cancelled one leaves at once.
Embedding requests and, with --speculative, the decode step of a stream that
decodes alone (a verify pass) run as their own unit of work in the same turn. Each request's generation is
a realm_web.generation state machine (the same one `Realm` runs).

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
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import chat as chat_mod
from .. import lora as lora_mod
from .. import store
from ..core_model import CoreModel, Session
from ..errors import RealmError
from ..batching import Want, plan_step, served_last, step_rows
from ..generation import DECODE, Generation, Vocab, advance, common_prefix
from ..speculative import make_speculator
from ..limits import EVAL_BATCH, default_ctx
from .config import PREFILL_CHUNK
from .errors import APIError, bad_request, server_error, unavailable
from .schemas import Sampling

log = logging.getLogger("realm_web.server")


# ---------------------------------------------------------------------- jobs
QUEUED, RUNNING, DONE = "queued", "running", "done"


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
        self.gen: Generation | None = None   # a generate job's state machine, from admission on
        self.grammar = None                  # its compiled grammar (CoreModel.grammar), if any
        self.lora: list[tuple[str, float]] = []   # [(adapter id, scale)] asked for
        self.adapters: list = []             # [(LoraAdapter, scale)] it holds (retained) while it runs
        self.t_first: float | None = None
        self.embed_ids: list[list[int]] = []
        self.embed_k = 0
        self.embed_pos = 0
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

    @property
    def generated(self) -> int:
        return self.gen.stats.generated_tokens if self.gen is not None else 0


# ---------------------------------------------------------------------- pool
@dataclass
class _Entry:
    session: Session
    tenant: str
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: float = 0.0
    speculator: object = None   # this session's Speculator (drafts adapt per session), made on first use


class SessionPool:
    """Sessions of one model, each owned by one tenant for its whole life."""

    def __init__(self, model: CoreModel, n_ctx: int, max_sessions: int, cache_types=("f16", "f16")) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.cache_types = tuple(cache_types)   # (K, V): "f16" or "q8_0"
        self.max_sessions = max(1, max_sessions)
        self.entries: list[_Entry] = []

    def busy(self) -> int:
        return sum(e.busy for e in self.entries)

    def can_admit(self) -> bool:
        return len(self.entries) < self.max_sessions or any(not e.busy for e in self.entries)

    def acquire(self, tenant: str, ids: list[int]) -> _Entry | None:
        mine = [e for e in self.entries if not e.busy and e.tenant == tenant]
        if mine:
            e = max(mine, key=lambda e: (common_prefix(e.tokens, ids), e.last_used))
        elif len(self.entries) < self.max_sessions:
            e = _Entry(Session(self.model, self.n_ctx, *self.cache_types), tenant)
            self.entries.append(e)
        else:
            others = [e for e in self.entries if not e.busy]
            if not others:
                return None
            self._evict(min(others, key=lambda e: e.last_used))
            e = _Entry(Session(self.model, self.n_ctx, *self.cache_types), tenant)
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
        if e.speculator is not None:
            e.speculator.close()
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
                 idle_ttl: float = 600.0, metrics=None, prefill_chunk: int = PREFILL_CHUNK,
                 threads: int | None = None, speculative: str | None = None, draft_model: str | None = None,
                 draft_tokens: int = 8, batch_tokens: int | None = None, cache_types=("f16", "f16")) -> None:
        self.id = model_id
        self.path = str(path)
        self.chunk = max(1, min(EVAL_BATCH, int(prefill_chunk)))
        self.metrics = metrics
        self.model = store.acquire(path, threads=threads)
        try:
            core_max = self.model.batch_max_tokens()
            if batch_tokens is not None and not 1 <= int(batch_tokens) <= core_max:
                raise ValueError(f"batch_tokens must be between 1 and {core_max} (the core's budget per forward "
                                 f"pass), got {batch_tokens}")
            self.batch_tokens = int(batch_tokens) if batch_tokens is not None else core_max
            info = self.model.info
            self.n_ctx = int(n_ctx) if n_ctx else default_ctx(info.n_ctx_train)
            self.n_embd = info.n_embd
            self.n_vocab = info.n_vocab
            self.created = int(time.time())
            self.template_args = chat_mod.template_args(self.model)   # read here: render_chat runs on the loop
            self.weights_bytes = sum(t.nbytes for t in self.model.tensors())
            self.pool = SessionPool(self.model, self.n_ctx, max_sessions, cache_types)
            Session(self.model, 1, *cache_types).close()   # a bad cache type fails at start-up, not per request
            self.threads = threads
            self.speculative = (speculative, draft_model, draft_tokens)
            if speculative or draft_model:   # refuse a bad mode or draft model at start-up, not per request
                make_speculator(speculative, self.model, 64, draft_model=draft_model, threads=threads).close()
            self.idle_ttl = idle_ttl
        except BaseException:
            store.release(self.model)
            raise
        self.vocab = Vocab(self.model)
        self._adapters: dict[str, object] = {}   # LoRA adapter id -> LoraAdapter (realm_web.lora)
        self._adapters_lock = threading.Lock()
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
    def render_chat(self, messages: list[dict], **extra) -> str:
        """The prompt text of a chat, from the model's own template (a 400 if the template refuses);
        extra: more template arguments (tools)."""
        try:
            return chat_mod.render(messages=messages, add_generation_prompt=True, **self.template_args, **extra)
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
                self._step()
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

    # ------------------------------------------------------------------ a step
    def _step(self) -> None:
        """One turn: a batched forward pass for the generating streams (decode tokens and
        prompt chunks, planned by batching.plan_step), then one unit for each job that runs
        alone (embeddings; speculative decode steps)."""
        live = []
        for job in self._rr:
            if job.cancelled:
                self._drop(job)
            else:
                live.append(job)
        # a verify pass per session pays off for a stream decoding alone; several streams share
        # one batched pass instead (the tokens are the same either way)
        decoding = sum(1 for j in live if j.kind == "generate" and j.gen.phase == DECODE)
        speculates = any(self.speculative[:2]) and decoding == 1
        solo, wants = [], []
        for job in live:
            gen = job.gen
            if job.kind != "generate" or (speculates and gen.phase == DECODE and job.sampling.logprobs is None):
                solo.append(job)
            else:
                decode = gen.phase == DECODE
                wants.append(Want(job, job.tenant, decode, 0 if decode else len(gen.ids) - gen.pos))
        rows = plan_step(wants, self.batch_tokens, self.chunk) if wants else []
        self._rr = collections.deque(served_last(live, [j for j, _ in rows] + solo))
        if rows:
            self._batch(rows)
        for job in solo:
            if not job.done and not job.cancelled:
                self._guarded(job, self._unit, job)
        n = len(self._rr)
        self._rr = collections.deque(j for j in self._rr if not j.done)
        if len(self._rr) != n:
            self._gauges(force=True)   # the active-requests gauge counts _rr

    def _guarded(self, job: Job, fn, *args) -> None:
        """fn(*args) for one job: its failure fails that request only, the server goes on."""
        try:
            fn(*args)
        except APIError as e:
            self._fail(job, e)
        except Exception as e:  # a core failure
            log.exception("request failed in the core (model %s)", self.id)
            self._fail(job, server_error(f"generation failed: {e}"))

    def _batch(self, rows: list[tuple[Job, int]]) -> None:
        """One forward pass for `rows` ((job, tokens)): all their sessions in one core call. A
        row the core refuses (it names the session; then no session changed) fails its request
        and the rest run again without it; a batch-wide failure runs each row alone."""
        while rows:
            befores = [job.gen.stats.generated_tokens for job, _ in rows]
            try:
                texts = step_rows(self.model, [(job.gen, job.entry.session, n) for job, n in rows])
            except RealmError as e:
                i = getattr(e, "session_index", None)
                if i is None or not 0 <= i < len(rows):
                    log.warning("batched step failed (%s); running its %d rows one by one", e, len(rows))
                    for job, n in rows:
                        self._guarded(job, self._unit, job, n)
                    return
                job = rows.pop(i)[0]
                log.warning("request dropped from a batched step: %s", e)
                self._fail(job, server_error(f"generation failed: {e}"))
                continue
            if self.metrics:
                self.metrics.batch_steps.labels(self.id).inc()
                self.metrics.batch_sessions.labels(self.id).observe(len(rows))
                self.metrics.batch_tokens.labels(self.id).observe(sum(n for _, n in rows))
            for (job, _), before, text in zip(rows, befores, texts):
                self._guarded(job, self._progress, job, before, text)
            return

    # ------------------------------------------------------------ LoRA adapters
    def load_lora(self, aid: str, path: str):
        """Load (once per model and file) and register an adapter under an id; RealmError if it
        does not fit this model. Replacing an id's file keeps requests already running on the old one."""
        a = lora_mod.acquire(self.model, path)
        with self._adapters_lock:
            old = self._adapters.get(aid)
            self._adapters[aid] = a
        if old is not None:
            lora_mod.release(old)
        return a

    def unload_lora(self, aid: str) -> bool:
        """Forget an id; the adapter is freed once no running request holds it."""
        with self._adapters_lock:
            a = self._adapters.pop(aid, None)
        if a is not None:
            lora_mod.release(a)
        return a is not None

    def lora_adapters(self) -> list[dict]:
        with self._adapters_lock:
            return [{"id": aid, "path": a.path, "rank": a.rank, "alpha": a.alpha, "tensors": a.n_tensors}
                    for aid, a in self._adapters.items()]

    def _take_adapters(self, job: Job) -> None:
        """Resolve the job's adapter ids and hold them for its lifetime (a 400 for an unknown id)."""
        with self._adapters_lock:
            missing = [aid for aid, _ in job.lora if aid not in self._adapters]
            if missing:
                known = ", ".join(sorted(self._adapters)) or "none"
                raise bad_request(f"Invalid 'lora': unknown adapter id '{missing[0]}' for model '{self.id}' "
                                  f"(loaded: {known}; see GET /lora-adapters).", param="lora")
            job.adapters = [(lora_mod.retain(self._adapters[aid]), sc) for aid, sc in job.lora]

    def _retire(self, job: Job) -> None:
        for a, _ in job.adapters:
            lora_mod.release(a)
        job.adapters = []
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

    def _accept(self, job: Job) -> None:
        """Tokenize and check a new job; it then waits for a session (or fails at once)."""
        if job.cancelled:
            self._retire(job)
            return
        try:
            if job.kind == "generate":
                if job.ids is None:
                    job.ids = chat_mod.prompt_ids(self.model, job.text) if job.chat else \
                        self.model.tokenize(job.text, add_special=True, parse_special=True)
                self._check_ids(job.ids, job.param)
                self._take_adapters(job)
                sp = job.sampling
                if sp is not None and (sp.grammar or sp.json_schema is not None or sp.grammar_builder is not None):
                    for schema, param in sp.schema_checks:   # each tool's schema alone: a bad one is named
                        try:
                            self.model.json_schema_gbnf(schema)
                        except RealmError as e:
                            raise bad_request(f"Invalid '{param}': {e}", param=param) from None
                    try:   # compiled here (the scheduler thread), once per text: a bad grammar is the client's 400
                        text = sp.grammar or (sp.grammar_builder(self.model) if sp.grammar_builder is not None
                                              else self.model.json_schema_gbnf(sp.json_schema))
                        job.grammar = self.model.grammar(text)
                    except RealmError as e:
                        raise bad_request(f"Invalid '{sp.grammar_param}': {e}", param=sp.grammar_param) from None
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
                    s.set_sampler(sp.settings)
                    s.set_logprobs(sp.logprobs)   # (also turns them off on a pooled session)
                    s.set_grammar(job.grammar)    # (None removes a pooled session's)
                    if s.set_lora(job.adapters):  # (also [] : a pooled session never keeps another request's)
                        entry.tokens = []         # its cache was computed with other adapters: emptied
                    job.gen = Generation(self.vocab, job.ids, self.n_ctx, sp.options)
                    s.truncate(job.gen.reuse(entry.tokens))
                else:
                    if s.set_lora([]):            # embeddings are the base model's (no adapters)
                        entry.tokens = []
                    s.embed_begin()
            job.state = RUNNING
            self._rr.append(job)
            if self.metrics:
                self.metrics.queue_wait.labels(self.id).observe(time.perf_counter() - job.t_arrival)
            if self.metrics and job.kind == "generate":
                self.metrics.prompt_tokens.labels(job.tenant, self.id).inc(len(job.ids))
                self.metrics.cached_tokens.labels(job.tenant, self.id).inc(job.gen.stats.cached_tokens)

    def _unit(self, job: Job, chunk: int | None = None) -> bool:
        """One unit of work on the job's session alone (a prompt chunk of at most `chunk`
        tokens, one decode or verify step, an embedding chunk); True when the job is finished."""
        if job.kind == "embed":
            return self._embed_unit(job)
        gen = job.gen
        # (logprobs are the last sample's: a verify pass samples several, so those jobs do not speculate)
        spec = self._speculator(job.entry) if job.sampling.logprobs is None else None
        before = gen.stats.generated_tokens
        drafted0, accepted0 = (spec.stats.drafted, spec.stats.accepted) if spec else (0, 0)
        text = advance(gen, job.entry.session, chunk or self.chunk, speculator=spec)
        m = self.metrics
        if spec and m and spec.stats.drafted > drafted0:
            m.spec_drafted.labels(self.id).inc(spec.stats.drafted - drafted0)
            m.spec_accepted.labels(self.id).inc(spec.stats.accepted - accepted0)
        return self._progress(job, before, text)

    def _progress(self, job: Job, before: int, text: str) -> bool:
        """After a job's unit: rate, first-token and token metrics, its text, its end."""
        gen = job.gen
        new = gen.stats.generated_tokens - before
        m = self.metrics
        entries = []
        if new and job.sampling.logprobs is not None:   # one token per step without speculation
            lp = job.entry.session.logprobs()
            if lp:   # token bytes looked up here: the event loop never calls into the model
                piece = self.vocab.piece
                entries.append((piece(lp[0][0]), lp[0][1],
                                [(piece(t), v) for t, v in lp[1:1 + job.sampling.logprobs]]))
        if new:
            now = time.monotonic()
            self._rate.extend([now] * new)
            if job.t_first is None:
                job.t_first = gen.t_first
                if m:
                    m.ttft.labels(self.id, job.endpoint).observe(gen.t_first - job.t_arrival)
            if m:
                m.generated_tokens.labels(job.tenant, self.id).inc(new)
        if text or entries:
            job.emit("text", text, entries)   # per new token: (bytes, logprob, [(bytes, logprob), ...])
        return self._finish(job) if gen.done else False

    def _speculator(self, entry: _Entry):
        """The entry's Speculator when this model speculates (None otherwise)."""
        mode, draft, k = self.speculative
        if not (mode or draft):
            return None
        if entry.speculator is None:
            entry.speculator = make_speculator(mode, self.model, self.n_ctx, draft_model=draft, draft_tokens=k,
                                               threads=self.threads)
        return entry.speculator

    def _embed_unit(self, job: Job) -> bool:
        s = job.entry.session
        ids = job.embed_ids[job.embed_k]
        chunk = ids[job.embed_pos:job.embed_pos + self.chunk]
        s.embed_add(chunk)
        job.embed_pos += len(chunk)
        if job.embed_pos < len(ids):
            return False
        job.emit("embedding", job.embed_k, s.embed_end())
        job.embed_tokens += len(ids)
        job.embed_k += 1
        job.embed_pos = 0
        if job.embed_k < len(job.embed_ids):
            s.embed_begin()
            return False
        self._retire(job)
        with self.model.core.lock:
            self.pool.release(job.entry)
        job.entry = None
        job.emit("done", "stop", {"prompt_tokens": job.embed_tokens, "total_tokens": job.embed_tokens})
        return True

    def _finish(self, job: Job) -> bool:
        gen = job.gen
        self._retire(job)
        with self.model.core.lock:
            self.pool.release(job.entry)
        job.entry = None
        st = gen.stats
        if self.metrics and gen.t_decode0 is not None and st.generated_tokens > 1:
            dt = time.perf_counter() - gen.t_decode0
            if dt > 0:
                self.metrics.request_tps.labels(self.id).observe((st.generated_tokens - 1) / dt)
        usage = {"prompt_tokens": st.prompt_tokens, "completion_tokens": st.generated_tokens,
                 "total_tokens": st.prompt_tokens + st.generated_tokens,
                 "prompt_tokens_details": {"cached_tokens": st.cached_tokens}}
        job.emit("done", st.finish_reason, usage)
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
