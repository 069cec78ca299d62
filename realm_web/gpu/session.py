"""A session on the GPU: its own KV cache and activations, the model's shared weights.

`GpuSession` has the interface of `realm_web.core_model.Session` (eval,
logits, set_sampler, sample, step, n_past, tokens, truncate, close), so a
`Realm` runs on either. Tokenization and sampling stay in the core: the
session's sampler is the core's (realm_sampler_*), fed with the GPU's
argmax or top-k candidates (8 bytes or 2k words read back per token) or,
when penalties need the whole row, with the logits row.

One forward step is one submission: the body program (embedding and every
layer) for the batch, the head (final norm, output projection) when logits
are wanted, and the sampling program, then a copy of the few result words
into a mappable buffer.
"""
from __future__ import annotations

import threading

import numpy as np

from ..abi import MAX_LOGPROBS
from ..errors import ContextOverflowError, RealmError, core_error
from . import buffers as B
from .runner import Runner

STEP_BODY, STEP_HEAD, STEP_LORA_HEAD = 0, 1, 2  # (2: the head's LoRA ops, {R, 0, r0, 0})
ROPE_CHUNK = 256


class GpuSession:
    def __init__(self, gmodel, core_model, n_ctx: int) -> None:
        """Takes over one reference to gmodel (released by close, or here on failure)."""
        self._bufs: dict = {}
        self._sampler = self._hist = self._cand = self._sp = self._freqs_ptr = self._rope_tmp = 0
        self._gstate = 0   # the core's matcher state of the grammar set (realm_grammar_state_new), or 0
        self._hist_cap = 0
        self._readback = None
        self._lora: list = []        # [(LoraAdapter, scale)] (set_lora)
        self._lora_key: list = []
        self._lora_ops = None        # lora.LoraOps, or None
        self.gmodel = gmodel
        self.model = core_model
        self.core = core_model.core
        self.dev = gmodel.dev
        plan = self.plan = gmodel.plan
        m = plan.model
        self.n_vocab = int(m["n_vocab"])
        self.n_ctx = int(n_ctx)
        self.B = plan.max_batch
        self.max_logits_rows = int(plan.data["max_logits_rows"])
        self.rope_pairs = int(m["rope_dim"]) // 2
        self._tokens: list[int] = []
        self._logits_host: np.ndarray | None = None  # (rows, V) when read back
        self._head = (0, 0, 0, 0)                     # the head step of the last eval
        self._head_valid = False
        self._rope_filled = 0
        self._lock = threading.RLock()
        try:
            if self.n_ctx < 1:
                raise RealmError(f"context size must be at least 1, got {n_ctx}")
            if self.n_ctx > int(plan.data["max_ctx"]):
                raise RealmError(f"a context of {n_ctx} tokens does not fit this adapter's largest storage binding "
                                 f"(at most {plan.data['max_ctx']} here)")
            for b in plan.data["buffers"]:
                n = int(b["bytes"]) + int(b["ctx_bytes"]) * self.n_ctx
                self._bufs[b["name"]] = B.storage(self.dev, n, label=b["name"])
            U = B.usage()
            self._step = tuple(self.dev.device.create_buffer(label=f"step {w}", size=16, usage=U.UNIFORM | U.COPY_DST)
                               for w in ("body", "head", "lora head"))
            self.runner = Runner(self.dev, plan, gmodel.weights, self._bufs, self._step)
            with self.core.lock:
                self._sampler = self.core.call("realm_sampler_new", 0)
                if not self._sampler:
                    raise core_error(self.core)
                self._cand = self.core.alloc(4 * (2 + 2 * int(plan.data["max_topk"])))
                self._sp = self.core.alloc(48)
                rf = gmodel.weights.rope_freqs
                rl = gmodel.weights.rope_freqs_long
                if rl is not None and self.n_ctx >= rl[0]:
                    rf = rl[1]  # the session's context picks the factors (phi3's LongRoPE)
                if rf is not None:
                    self._freqs_ptr = self.core.alloc(rf.nbytes)
                    self.core.write(self._freqs_ptr, rf)
                self._rope_tmp = self.core.alloc(ROPE_CHUNK * self.rope_pairs * 8)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self.gmodel is None:
            return
        for b in self._bufs.values():
            b.destroy()
        self._bufs.clear()
        if self._readback is not None:
            self._readback.destroy()
            self._readback = None
        if self._lora_ops is not None:
            self._lora_ops.destroy()
            self._lora_ops = None
        self._lora = []
        with self.core.lock:
            if self._sampler:
                self.core.call("realm_sampler_free", self._sampler)
            if self._gstate:
                self.core.call("realm_grammar_state_free", self._gstate)
                self._gstate = 0
            for p in ("_hist", "_cand", "_sp", "_freqs_ptr", "_rope_tmp"):
                self.core.free(getattr(self, p))
                setattr(self, p, 0)
        self._sampler = 0
        from . import release_gpu_model
        g, self.gmodel = self.gmodel, None
        release_gpu_model(g)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------ state
    @property
    def n_past(self) -> int:
        return len(self._tokens)

    def tokens(self) -> list[int]:
        return list(self._tokens)

    def truncate(self, n: int) -> None:
        if n < len(self._tokens):
            del self._tokens[max(0, int(n)):]

    # ------------------------------------------------------------ internals
    def _check(self, ids: list[int]) -> None:
        if not ids:
            raise RealmError("nothing to evaluate: zero tokens")
        if self.n_past + len(ids) > self.n_ctx:
            raise ContextOverflowError(
                f"context full: {self.n_past} tokens in the session plus {len(ids)} new ones exceed its context of {self.n_ctx}")
        for t in ids:
            if t < 0 or t >= self.n_vocab:
                raise RealmError(f"token id {t} is out of range (vocabulary of {self.n_vocab})")

    def _fill_rope(self, upto: int) -> None:
        """The core's cos/sin for positions [filled, upto), a chunk at a time, into each of the
        plan's RoPE tables ("ropes": a buffer per kind of layer)."""
        ropes = self.plan.data.get("ropes") or [{"buffer": "rope", "swa": 0}]
        while self._rope_filled < upto:
            p0 = self._rope_filled
            n = min(ROPE_CHUNK, self.n_ctx - p0)
            for r in ropes:
                with self.core.lock:
                    self.core.call("realm_gpu_rope_table_layer", self.model.handle, int(r["swa"]), p0, n,
                                   self._freqs_ptr, self._rope_tmp)
                    data = self.core.view(self._rope_tmp, np.float32, n * self.rope_pairs * 2).copy()
                self.dev.device.queue.write_buffer(self._bufs[r["buffer"]], p0 * self.rope_pairs * 8, data)
            self._rope_filled = p0 + n

    def _staging(self, nbytes: int):
        self._readback = B.readback(self.dev, self._readback, nbytes)
        return self._readback

    def _write_step(self, which: int, words) -> None:
        self.dev.device.queue.write_buffer(self._step[which], 0, np.asarray(words, np.uint32))

    def _submit(self, body: list[int] | None = None, head: tuple | None = None, k: int | None = None,
                sample_prog: str | None = None, read: tuple | None = None) -> np.ndarray | None:
        """One submission, in this order: the body program for the tokens `body` (at
        n_past); the head program for head = (R, n_past, t0, k) (logits of batch rows
        t0..t0+R-1 into logits rows 0..R-1); the sampling program (on the head's last
        row; k = candidates for topk); a copy of read = (buffer, nbytes) to the host,
        whose bytes are returned."""
        dev = self.dev
        with dev.lock:
            q = dev.device.queue
            if body is not None:
                T = len(body)
                self._fill_rope(self.n_past + T)
                q.write_buffer(self._bufs["ids"], 0, np.asarray(body, np.uint32))
                self._write_step(STEP_BODY, (T, self.n_past, 0, 0))
            if head is not None or k is not None:
                h = head if head is not None else self._head
                if k is not None:
                    h = (h[0], h[1], h[2], k)
                self._head = tuple(h)
                self._write_step(STEP_HEAD, self._head)
                if head is not None:
                    self._write_step(STEP_LORA_HEAD, (head[0], 0, 0, 0))
            enc = dev.device.create_command_encoder()
            cp = enc.begin_compute_pass()
            if body is not None:
                self.runner.record(cp, "body", len(body))
            if head is not None:
                self.runner.record(cp, "head", head[0])
            if sample_prog is not None:
                self.runner.record(cp, sample_prog, self._head[0])
            cp.end()
            nb = 0
            if read is not None:
                buf, nbytes = read
                nb = (nbytes + 3) & ~3
                st = self._staging(nb)
                enc.copy_buffer_to_buffer(buf, 0, st, 0, nb)
            q.submit([enc.finish()])
            if read is None:
                return None
            st.map_sync(1)  # wgpu.MapMode.READ
            try:
                return np.frombuffer(st.read_mapped(0, nb), np.uint8)[:read[1]].copy()
            finally:
                st.unmap()

    def _forward(self, ids: list[int], all_logits: bool) -> None:
        """Evaluate ids in batches of up to max_batch. Logits of the last token stay on
        the GPU; with all_logits every row is read back, batch by batch."""
        self._logits_host = None
        self._head_valid = False
        rows_out = []
        V = self.n_vocab
        for i in range(0, len(ids), self.B):
            batch = ids[i:i + self.B]
            T = len(batch)
            last = i + T == len(ids)
            p0 = self.n_past
            if all_logits:
                done = 0
                while done < T:  # more rows than the logits buffer holds: run the head again
                    R = min(T - done, self.max_logits_rows)
                    got = self._submit(batch if done == 0 else None, (R, p0, done, 0),
                                       read=(self._bufs["logits"], R * V * 4))
                    if done == 0:
                        self._tokens.extend(batch)
                    rows_out.append(got.view(np.float32).reshape(R, V))
                    done += R
            else:
                self._submit(batch, (1, p0, T - 1, 0) if last else None)
                self._tokens.extend(batch)
        if all_logits:
            self._logits_host = np.concatenate(rows_out)
        self._head_valid = True

    # ------------------------------------------------------------ LoRA
    def set_lora(self, adapters) -> bool:
        """As Session.set_lora: apply [(LoraAdapter, scale), ...] ([] removes them) from the next
        eval, with the ops the core's LoRA plan gives (realm_web/gpu/lora.py). A change empties
        the cache (returns True then). The caller keeps the adapters alive while in use."""
        from ..lora import check_adapters
        from .lora import LoraOps
        pairs = check_adapters(adapters, self.model)
        key = [(a.handle, sc) for a, sc in pairs]
        with self._lock:
            if key == self._lora_key and all(a is b for (a, _), (b, _) in zip(pairs, self._lora)):
                return False  # the same adapters and scales: keep the ops (and the cache)
            new = LoraOps(self.gmodel, self.model, pairs) if pairs else None
            if new is not None and new.empty:
                new.destroy()
                new = None
            try:
                self.runner.set_lora(new)
            except BaseException:
                if new is not None:
                    new.destroy()
                raise
            old, self._lora_ops = self._lora_ops, new
            if old is not None:
                old.destroy()
            self._batch_ops = None  # a batch compiles this session's ops again
            changed = key != self._lora_key
            if changed:
                self.truncate(0)
                self._head_valid = False
                self._logits_host = None
            self._lora, self._lora_key = pairs, key
        return changed

    @property
    def lora(self) -> list:
        """[(LoraAdapter, scale), ...] this session applies."""
        return [(a, sc) for a, sc in self._lora if not a.closed]

    # ------------------------------------------------------------ the Session interface
    def eval(self, ids, all_logits: bool = False) -> None:
        ids = [int(t) for t in ids]
        with self._lock:
            self._check(ids)
            self._forward(ids, all_logits)

    def logits(self) -> np.ndarray:
        """A copy of the last eval's logits: shape (rows, n_vocab)."""
        with self._lock:
            if self._logits_host is None:
                if not self._head_valid:
                    raise RealmError("no logits: evaluate tokens first")
                R = self._head[0]
                got = self._submit(read=(self._bufs["logits"], R * self.n_vocab * 4))
                self._logits_host = got.view(np.float32).reshape(R, self.n_vocab)
            return self._logits_host.copy()

    def set_sampler(self, s) -> None:
        with self.core.lock:
            self.core.write(self._sp, s.pack())
            self.core.call("realm_sampler_set", self._sampler, self._sp)

    def set_grammar(self, grammar, root: str = "root") -> None:
        """As Session.set_grammar: every later sample follows the GBNF grammar (text or a
        model.grammar() handle), from its start; None removes it. The core masks the whole
        logits row (read back while a grammar is set) and advances the grammar
        (realm_sampler_sample_grammar)."""
        from ..core_model import Grammar
        g = None
        if grammar is not None:
            g = grammar if isinstance(grammar, Grammar) else self.model.grammar(grammar, root)
            if g.model is not self.model:
                raise RealmError("the grammar was compiled for another model")
        with self.core.lock:
            st = 0
            if g is not None:
                st = self.core.call("realm_grammar_state_new", self.model.handle, g.handle)
                if not st:
                    raise core_error(self.core)
            if self._gstate:
                self.core.call("realm_grammar_state_free", self._gstate)
            self._gstate = st

    def set_logprobs(self, n: int | None) -> None:
        """As Session.set_logprobs: the core's sampler records them (realm_sampler_set_logprobs),
        from the whole logits row read back (realm_sampler_need then asks for it)."""
        with self.core.lock:
            if not self.core.call("realm_sampler_set_logprobs", self._sampler, -1 if n is None else int(n)):
                raise core_error(self.core)

    def logprobs(self) -> list[tuple[int, float]]:
        """As Session.logprobs: the last sample's (id, logprob), the sampled token first."""
        k = 1 + MAX_LOGPROBS
        c = self.core
        with c.lock:
            p = c.alloc(8 * k)
            try:
                n = c.call("realm_sampler_logprobs", self._sampler, p, p + 4 * k, k)
                if n < 0:
                    raise core_error(c)
                ids = c.view(p, np.int32, n).tolist() if n else []
                lps = c.view(p + 4 * k, np.float32, n).tolist() if n else []
            finally:
                c.free(p)
        return list(zip(ids, lps))

    def _need(self, n_hist: int) -> int:
        with self.core.lock:
            if self._gstate:   # the grammar masks the whole row
                return 0
            return self.core.call("realm_sampler_need", self._sampler, self.n_vocab, n_hist)

    def _sample_candidates(self, words: np.ndarray, n: int) -> int:
        with self.core.lock:
            self.core.write(self._cand, words[:2 * n].astype(np.uint32))
            t = self.core.call("realm_sampler_sample_top", self._sampler, self._cand, n)
            if t < 0:
                raise core_error(self.core)
            return t

    def _sample_full(self, row: np.ndarray) -> int:
        c = self.core
        with c.lock:
            n = len(self._tokens)
            lp = c.alloc(row.nbytes)
            try:
                c.write(lp, np.ascontiguousarray(row, np.float32))
                if n > self._hist_cap:
                    c.free(self._hist)
                    self._hist_cap = max(n, 2 * self._hist_cap, 64)
                    self._hist = c.alloc(4 * self._hist_cap)
                if n:
                    c.view(self._hist, np.int32, n)[:] = self._tokens
                if self._gstate:
                    t = c.call("realm_sampler_sample_grammar", self._sampler, self._gstate, lp, self.n_vocab,
                               self._hist or 0, n)
                else:
                    t = c.call("realm_sampler_sample", self._sampler, lp, self.n_vocab, self._hist or 0, n)
            finally:
                c.free(lp)
            if t < 0:
                raise core_error(c)
            return t

    def _sample_after(self, body: list[int] | None) -> int:
        """Run (the body and head for one new token, then) what the sampler needs; the token."""
        head = (1, self.n_past, 0, 0) if body else None
        need = self._need(len(self._tokens) + (len(body) if body else 0))
        if need == 0:  # the whole row: penalties, or no top-k
            rows = 1 if body else self._head[0]
            got = self._submit(body, head, read=(self._bufs["logits"], rows * self.n_vocab * 4))
            if body:
                self._tokens.extend(body)
            rows = got.view(np.float32).reshape(-1, self.n_vocab)
            self._logits_host = rows
            self._head_valid = True
            return self._sample_full(rows[-1].copy())
        prog, nwords = ("argmax", 2) if need == 1 else ("topk", 2 + 2 * need)
        got = self._submit(body, head, k=need if need > 1 else None, sample_prog=prog,
                           read=(self._bufs["sample"], 4 * nwords))
        if body:
            self._tokens.extend(body)
            self._logits_host = None
            self._head_valid = True
        w = got.view(np.uint32)
        if need == 1:
            return self._sample_candidates(w[:2], 1)
        n = int(w[0])
        return self._sample_candidates(w[2:2 + 2 * n], n)

    def sample(self) -> int:
        with self._lock:
            if not self._head_valid:
                raise RealmError("nothing to sample: evaluate tokens first")
            if self._logits_host is not None and self._need(len(self._tokens)) == 0:
                return self._sample_full(self._logits_host[-1].copy())
            return self._sample_after(None)

    def step(self, token: int) -> int:
        """Evaluate one token and sample the next: one submission, a few bytes back."""
        token = int(token)
        with self._lock:
            self._check([token])
            self._logits_host = None
            return self._sample_after([token])
