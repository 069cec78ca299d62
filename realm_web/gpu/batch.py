"""Several GPU sessions of one model advanced in one forward pass (continuous batching).

The GPU counterpart of CoreModel.eval_batch / step_batch (core/batch.c): session i
adds chunks[i] (a prompt chunk or one decode token) after its own history, and the
batch's rows are laid out one session after another (session i: rows t0_i ..
t0_i + n_i - 1). The core's plan (core/api_gpu.c) says how:

- every op of the body runs once over all T rows, on the batch's own activation
  buffers (`GpuBatch`, one per GpuModel): the embedding, norms, activation
  quantization and every matmul (matrix-matrix kernel with T columns: each weight
  matrix is read once per step for all sessions);
- ops the plan marks "s" (a session op: RoPE + KV-cache writes, attention) run once
  per session, bound to that session's KV cache and RoPE table, with the session's
  body step {n_i, n_past_i, t0_i, 0}: its rows, at its own positions, over its own cache;
- the head ("head_rows") computes the logits of the batch rows listed in "rows"
  (each session's last row, or all its rows); each session's last row is copied into
  that session's logits buffer, so logits()/sample() afterwards work as after eval;
- step_batch then runs every session's own sampling program (argmax / top-k) in the
  same submission, and reads back one staging buffer.

A row's values do not depend on the rows it shares a step with (each kernel computes
every (row, token) pair in the same order whatever the number of tokens), so each
session's logits are the bits it would get alone (tests/test_gpu_batch.py).
A refused batch (ContextOverflowError / RealmError, `.session_index` naming the
session or None) is refused before anything runs: no session changed.
"""
from __future__ import annotations

import numpy as np

from ..errors import ContextOverflowError, RealmError
from . import buffers as B
from .runner import compile_op, dispatch

STEP_BODY, STEP_HEAD, STEP_LORA_HEAD = 0, 1, 2
ALL_LOGITS, NO_LOGITS = 1, 2  # flags, as realm_batch_eval's


def _err(cls, msg: str, index):
    e = cls(msg)
    e.session_index = index
    return e


class GpuBatch:
    """The buffers of one batched step (activations of up to max_batch rows, the rows
    list, logits) and the ops that run over all rows; owned by a GpuModel."""

    def __init__(self, gmodel) -> None:
        self.gmodel = gmodel
        dev = self.dev = gmodel.dev
        plan = self.plan = gmodel.plan
        self.per_session = {b["name"] for b in plan.data["buffers"] if b.get("per_session")}
        self.bufs = {}
        self._staging = None
        try:
            for b in plan.data["buffers"]:
                if b["name"] not in self.per_session:
                    self.bufs[b["name"]] = B.storage(dev, int(b["bytes"]), label="batch " + b["name"])
            U = B.usage()
            self.step = tuple(dev.device.create_buffer(label=f"batch step {w}", size=16, usage=U.UNIFORM | U.COPY_DST)
                              for w in ("body", "head"))

            def shared(name):
                if name in self.per_session:
                    raise RealmError(f"GPU plan: an op over all rows binds the session buffer {name!r}")
                return self.bufs[name]
            self.body = [None if o.get("s") else
                         compile_op(dev, plan, gmodel.weights, "body", i, o, shared, self.step[o["step"]])
                         for i, o in enumerate(plan.programs["body"])]
            self.head = [compile_op(dev, plan, gmodel.weights, "head_rows", i, o, shared, self.step[o["step"]])
                         for i, o in enumerate(plan.programs["head_rows"])]
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        for b in self.bufs.values():
            b.destroy()
        self.bufs.clear()
        if self._staging is not None:
            self._staging.destroy()
            self._staging = None

    def session_ops(self, s) -> tuple[list, dict]:
        """Session s's compiled session ops of the body (its cache, RoPE table and body step;
        the batch's activations) and its LoRA ops by slot (its adapters, scratch and steps),
        compiled on first use and kept by the session."""
        cached = getattr(s, "_batch_ops", None)
        if cached is not None and cached[0] is self:
            return cached[1], cached[2]
        plan = self.plan

        def resolve(name):
            return s._bufs[name] if name in self.per_session else self.bufs[name]
        ops = [compile_op(self.dev, plan, self.gmodel.weights, "body", i, o, resolve, s._step[STEP_BODY])
               if o.get("s") else None for i, o in enumerate(plan.programs["body"])]
        hooks = s._lora_ops.compile(resolve, s._step) if s._lora_ops is not None else {}
        s._batch_ops = (self, ops, hooks)
        return ops, hooks

    def staging(self, nbytes: int):
        self._staging = B.readback(self.dev, self._staging, nbytes, "batch readback")
        return self._staging


def batch_of(gmodel) -> GpuBatch:
    with gmodel.dev.lock:
        b = getattr(gmodel, "_batch", None)
        if b is None:
            b = gmodel._batch = GpuBatch(gmodel)
        return b


def _validate(sessions, chunks, flags, core_model=None):
    """Every check before anything runs; the common GpuModel. core_model: the CoreModel
    whose eval_batch / step_batch was called (its sessions only)."""
    from .session import GpuSession
    n = len(sessions)
    if n == 0:
        raise _err(RealmError, "batch: no sessions", None)
    if len(chunks) != n or len(flags) != n:
        raise _err(RealmError, f"batch: {n} sessions need {n} chunks and flags (got {len(chunks)}, {len(flags)})", None)
    g = None
    seen = set()
    for i, (s, ch, f) in enumerate(zip(sessions, chunks, flags)):
        where = f"batch session {i} of {n}"
        if not isinstance(s, GpuSession):
            raise _err(RealmError, f"{where}: not a GPU session ({type(s).__name__})", i)
        if s.gmodel is None:
            raise _err(RealmError, f"{where}: session is closed", i)
        if core_model is not None and s.model is not core_model:
            raise _err(RealmError, f"{where}: a session of another model", i)
        if g is None:
            g = s.gmodel
        elif s.gmodel is not g:
            raise _err(RealmError, f"{where}: a session of another model (or device) than session 0", i)
        if id(s) in seen:
            raise _err(RealmError, f"{where}: the same session twice in one batch", i)
        seen.add(id(s))
        if f not in (0, ALL_LOGITS, NO_LOGITS):
            raise _err(RealmError, f"{where}: bad flag {f} (0, 1 all logits, 2 none)", i)
        if not ch:
            raise _err(RealmError, f"{where}: nothing to evaluate: zero tokens", i)
    total = sum(len(ch) for ch in chunks)
    if total > g.plan.max_batch:
        raise _err(RealmError, f"batch: {total} tokens in all exceed the plan's {g.plan.max_batch} rows per step "
                               f"(batch_max_tokens)", None)
    for i, (s, ch) in enumerate(zip(sessions, chunks)):
        try:
            s._check(ch)
        except ContextOverflowError as e:
            raise _err(ContextOverflowError, f"batch session {i} of {n}: {e}", i) from None
        except RealmError as e:
            raise _err(RealmError, f"batch session {i} of {n}: {e}", i) from None
    return g


def run_batch(sessions, chunks, flags, sample: bool = False, core_model=None) -> list[int] | None:
    """One forward pass for several GPU sessions of one model (see the module docstring);
    with sample=True each session then samples its next token with its own sampler
    (flags must all be 0) and the ids are returned."""
    sessions = list(sessions)
    chunks = [[int(t) for t in ch] for ch in chunks]
    flags = [int(f) for f in flags]
    g = _validate(sessions, chunks, flags, core_model)
    if sample and any(flags):
        raise _err(RealmError, "batch: sampling needs every session's last logits (flags 0)", None)
    locks = [s._lock for s in sorted(sessions, key=id)]
    for lk in locks:
        lk.acquire()
    try:
        _validate(sessions, chunks, flags, core_model)  # again, now that nobody else can change them
        return _run(batch_of(g), sessions, chunks, flags, sample)
    finally:
        for lk in reversed(locks):
            lk.release()


def _run(bt: GpuBatch, sessions, chunks, flags, sample):
    dev = bt.dev
    q = dev.device.queue
    plan = bt.plan
    V = int(plan.model["n_vocab"])
    L = int(plan.data["max_logits_rows"])
    n = len(sessions)
    counts = [len(ch) for ch in chunks]
    t0s = [sum(counts[:i]) for i in range(len(counts))]
    T = sum(counts)
    p0s = [s.n_past for s in sessions]
    # the logits rows: (batch row, session, row within the session)
    wanted = []
    for i, f in enumerate(flags):
        if f == ALL_LOGITS:
            wanted += [(t0s[i] + r, i, r) for r in range(counts[i])]
        elif f == 0:
            wanted.append((t0s[i] + counts[i] - 1, i, counts[i] - 1))
    chunks_of_rows = [wanted[j:j + L] for j in range(0, len(wanted), L)] or [[]]
    needs = [s._need(len(s._tokens) + c) for s, c in zip(sessions, counts)] if sample else None
    all_rows = {i: [None] * counts[i] for i in range(n) if flags[i] == ALL_LOGITS}
    picked = [None] * n  # step: what came back for session i (sample words or a logits row)
    with dev.lock:
        compiled = [bt.session_ops(s) for s in sessions]
        ops = [c[0] for c in compiled]
        hooks = [c[1] for c in compiled]  # each session's LoRA ops, by the slot they follow
        for s, p0, c in zip(sessions, p0s, counts):
            s._fill_rope(p0 + c)
        for ci, rows in enumerate(chunks_of_rows):
            first, last = ci == 0, ci == len(chunks_of_rows) - 1
            if first:
                q.write_buffer(bt.bufs["ids"], 0, np.asarray([t for ch in chunks for t in ch], np.uint32))
                q.write_buffer(bt.step[STEP_BODY], 0, np.asarray((T, 0, 0, 0), np.uint32))
                for s, p0, c, t0 in zip(sessions, p0s, counts, t0s):
                    s._write_step(STEP_BODY, (c, p0, t0, 0))
            R = len(rows)
            head_rows = {}  # session -> (its first logits row in this chunk, its rows)
            for j, (_, i, _) in enumerate(rows):
                j0, c = head_rows.get(i, (j, 0))
                head_rows[i] = (j0, c + 1)
            if R:
                q.write_buffer(bt.bufs["rows"], 0, np.asarray([r[0] for r in rows], np.uint32))
                q.write_buffer(bt.step[STEP_HEAD], 0, np.asarray((R, 0, 0, 0), np.uint32))
                for i, (j0, c) in head_rows.items():
                    if hooks[i]:
                        sessions[i]._write_step(STEP_LORA_HEAD, (c, 0, j0, 0))
            enc = dev.device.create_command_encoder()
            cp = enc.begin_compute_pass()
            if first:
                last_pipe = None
                for k, op in enumerate(bt.body):
                    if op is not None:
                        last_pipe = dispatch(cp, op, T, last_pipe)
                        if op.hook is not None:  # each session's adapters on its own rows
                            for i in range(n):
                                for lo in hooks[i].get(op.hook, ()):
                                    last_pipe = dispatch(cp, lo, counts[i], last_pipe)
                    else:
                        for i in range(n):
                            last_pipe = dispatch(cp, ops[i][k], counts[i], last_pipe)
            if R:
                last_pipe = None
                for op in bt.head:
                    last_pipe = dispatch(cp, op, R, last_pipe)
                    if op.hook is not None:
                        for i, (j0, c) in head_rows.items():
                            for lo in hooks[i].get(op.hook, ()):
                                last_pipe = dispatch(cp, lo, c, last_pipe)
            cp.end()
            # each session's last row into its own logits buffer (row 0); readbacks into staging
            reads = []  # (what, session, row, staging offset, nbytes)
            off = 0
            lg = bt.bufs["logits"]
            for j, (row, i, r) in enumerate(rows):
                if r == counts[i] - 1:  # its head step then describes that row, as after eval
                    enc.copy_buffer_to_buffer(lg, j * V * 4, sessions[i]._bufs["logits"], 0, V * 4)
                    sessions[i]._write_step(STEP_HEAD, (1, p0s[i], 0, 0))
                if flags[i] == ALL_LOGITS or (sample and needs[i] == 0):
                    reads.append(("row", i, r, off, V * 4, j))
                    off += V * 4
            if sample and last:
                cp = enc.begin_compute_pass()
                for i, s in enumerate(sessions):
                    if needs[i] == 0:
                        continue
                    s._head = (1, p0s[i], 0, needs[i] if needs[i] > 1 else 0)
                    s._write_step(STEP_HEAD, s._head)
                    s.runner.record(cp, "argmax" if needs[i] == 1 else "topk", 1)
                cp.end()
                for i, s in enumerate(sessions):
                    if needs[i]:
                        nb = 4 * (2 if needs[i] == 1 else 2 + 2 * needs[i])
                        reads.append(("sample", i, 0, off, nb, None))
                        off += (nb + 255) & ~255
            st = bt.staging(off) if off else None
            for what, i, r, o, nb, j in reads:
                src = lg if what == "row" else sessions[i]._bufs["sample"]
                enc.copy_buffer_to_buffer(src, j * V * 4 if what == "row" else 0, st, o, nb)
            q.submit([enc.finish()])
            if st is not None:
                st.map_sync(1)  # wgpu.MapMode.READ
                try:
                    data = np.frombuffer(st.read_mapped(0, off), np.uint8).copy()
                finally:
                    st.unmap()
                for what, i, r, o, nb, j in reads:
                    chunk = data[o:o + nb]
                    if what == "row":
                        row_v = chunk.view(np.float32)
                        if flags[i] == ALL_LOGITS:
                            all_rows[i][r] = row_v
                        if sample and r == counts[i] - 1:
                            picked[i] = ("row", row_v)
                    else:
                        picked[i] = ("words", chunk.view(np.uint32))
    # the sessions' new state, as eval would leave it
    for i, s in enumerate(sessions):
        s._tokens.extend(chunks[i])
        s._head = (1, p0s[i], 0, 0) if not sample or not needs[i] else s._head
        s._head_valid = flags[i] != NO_LOGITS
        s._logits_host = np.stack(all_rows[i]) if flags[i] == ALL_LOGITS else None
    if not sample:
        return None
    out = []
    for i, s in enumerate(sessions):
        kind, v = picked[i]
        if kind == "row":
            s._logits_host = v[None, :].copy()
            out.append(s._sample_full(v.copy()))
        elif needs[i] == 1:
            out.append(s._sample_candidates(v[:2], 1))
        else:
            k = int(v[0])
            out.append(s._sample_candidates(v[2:2 + 2 * k], k))
    return out


def eval_batch(sessions, chunks, all_logits=False, logits=True) -> None:
    """CoreModel.eval_batch for GPU sessions of one model: session i evaluates chunks[i]
    after its own history, all in one forward pass. all_logits / logits: a bool or one
    per session. Afterwards each session's logits() / sample() are what eval would give."""
    n = len(sessions)
    al = [all_logits] * n if isinstance(all_logits, bool) else list(all_logits)
    lg = [logits] * n if isinstance(logits, bool) else list(logits)
    flags = [(ALL_LOGITS if a else 0) if w else NO_LOGITS for a, w in zip(al, lg)]
    run_batch(sessions, chunks, flags)


def step_batch(sessions, tokens) -> list[int]:
    """CoreModel.step_batch for GPU sessions: session i evaluates tokens[i] (an id, or a
    list of ids), then samples its next token with its own sampler; one submission."""
    chunks = [list(t) if isinstance(t, (list, tuple)) else [int(t)] for t in tokens]
    return run_batch(sessions, chunks, [0] * len(chunks), sample=True)
