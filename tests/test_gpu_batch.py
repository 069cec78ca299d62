"""Continuous batching on the WebGPU backend (realm_web/gpu/batch.py), on lavapipe.

Several GPU sessions of one model advance in one forward pass: every matmul runs
once with one column per row of all sessions, RoPE / KV writes / attention run per
session over its own cache (the plan's session ops), the head gathers each session's
last row. Each kernel computes every (row, token) pair the same way whatever else is
in the step, so a batched session's logits are the bits of the same session run
alone (np.array_equal, no tolerance), and greedy tokens are equal.
"""
from __future__ import annotations

import numpy as np
import pytest

from gpu_helpers import gpu_device

pytestmark = pytest.mark.timeout(1800)

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


@pytest.fixture(scope="module")
def dev():
    return gpu_device()


@pytest.fixture(scope="module")
def k_quant_model(synthetic_model, llama_quantized):
    """Every matrix a K-quant (Q4_K, with Q5_K / Q6_K where llama.cpp's Q4_K_S mix puts them)."""
    from reference import llama_cpp_available
    if not llama_cpp_available():
        from conftest import missing
        missing("llama-cpp-python is needed to make a K-quant file")
    src = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
    return llama_quantized(src, "Q4_K_S")


def _open(path):
    from realm_web import gpu
    return gpu.acquire_model(path)


def _release(m):
    from realm_web import store
    store.release(m)


def alone_run(gm, prompt_ids, n_steps, n_ctx=64):
    """One GPU session alone: the logits after its prompt and after each greedy token."""
    from realm_web import gpu
    s = gpu.open_gpu_session(gm, n_ctx)
    try:
        s.eval(prompt_ids)
        logits, chunks = [s.logits()[-1]], [list(prompt_ids)]
        for _ in range(n_steps):
            t = int(logits[-1].argmax())
            s.eval([t])
            logits.append(s.logits()[-1])
            chunks.append([t])
        return chunks, logits
    finally:
        s.close()


def check_batched_equals_alone(path, prompts, n_steps, starts):
    """Session i joins the batch at step starts[i] with its prompt (a prompt chunk beside
    the others' decode tokens), then decodes teacher-forced on its alone-greedy tokens;
    every logits row must be the alone run's bits. Then step_batch free-running greedy
    gives each session's alone tokens."""
    from realm_web import gpu
    gm = _open(path)
    try:
        ids = [gm.tokenize(p) for p in prompts]
        ref = [alone_run(gm, p, n_steps) for p in ids]
        ss = [gpu.open_gpu_session(gm, 64) for _ in prompts]
        try:
            for step in range(max(starts) + n_steps + 1):
                active = [i for i, st in enumerate(starts) if 0 <= step - st <= n_steps]
                gm_batch = [ss[i] for i in active]
                gm.eval_batch(gm_batch, [ref[i][0][step - starts[i]] for i in active])
                for i in active:
                    got, want = ss[i].logits()[-1], ref[i][1][step - starts[i]]
                    assert np.array_equal(got, want), \
                        f"session {i} step {step - starts[i]}: max diff {np.abs(got - want).max()}"
            for i, s in enumerate(ss):
                assert s.tokens() == [t for ch in ref[i][0] for t in ch]
            # free-running: step_batch's GPU argmax + each session's sampler
            for s in ss:
                s.truncate(0)
            gm.eval_batch(ss, ids)
            toks = [s.sample() for s in ss]
            out = [[t] for t in toks]
            for _ in range(n_steps - 1):
                toks = gm.step_batch(ss, toks)
                for o, t in zip(out, toks):
                    o.append(t)
            for i in range(len(ss)):
                assert out[i] == [int(lg.argmax()) for lg in ref[i][1][:n_steps]], f"session {i}"
        finally:
            for s in ss:
                s.close()
        assert gm.info.n_vocab
    finally:
        _release(gm)


def test_plan_marks_session_ops(default_model_path):
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    m = store.acquire(default_model_path, vocab_only=True)
    try:
        plan = build_plan(m, {"version": 1, "flags": 4, "max_binding": 128 << 20, "max_buffer": 2 << 30,
                              "max_batch": 64})
        per = {b["name"] for b in plan.data["buffers"] if b["per_session"]}
        assert per == {"rope"} | {f"{kv}.{l}" for kv in "kv" for l in range(30)}
        sess = [o for o in plan.programs["body"] if o.get("s")]
        assert len(sess) == 60 and all(o["label"].endswith(("rope_kv", "attention")) for o in sess)
        # every op over all rows binds no session buffer; session ops bind their cache and table
        assert all(not (set(b for b in o["b"] if isinstance(b, str)) & per) for o in plan.programs["body"]
                   if not o.get("s"))
        head = plan.programs["head_rows"]
        assert "GATHER" in plan.kernels[head[0]["k"]]["defines"] and head[0]["b"][-1] == "rows"
    finally:
        store.release(m)


def test_default_model_batched_equals_alone(dev, default_model_path):
    """Q4_1 (the default model): three sessions of different prompt lengths, the third
    joining while the others decode."""
    check_batched_equals_alone(default_model_path, PROMPTS, 4, starts=[0, 0, 1])


def test_k_quant_model_batched_equals_alone(dev, k_quant_model):
    check_batched_equals_alone(k_quant_model, PROMPTS + ["Hello"], 5, starts=[0, 1, 0, 2])


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
def test_llama_cpp_q4_k_m_batched_equals_alone(dev, llama_quantized):
    """llama.cpp's Q4_K_M of the default model (Q5_0 / Q8_0 / Q4_K / Q6_K tensors)."""
    check_batched_equals_alone(llama_quantized(None, "Q4_K_M"), PROMPTS[:2], 3, starts=[0, 0])


def test_all_logits_no_logits_and_sampling(dev, default_model_path):
    """flags per session: all rows (equal to eval(all_logits=True)), none, last; and
    step_batch with samplers that need top-k candidates and the whole row."""
    from realm_web import gpu
    from realm_web.core_model import SamplerSettings
    from realm_web.errors import RealmError
    gm = _open(default_model_path)
    try:
        ids = [gm.tokenize(p) for p in PROMPTS]
        alone = gpu.open_gpu_session(gm, 64)
        alone.eval(ids[0], all_logits=True)
        want_all = alone.logits()
        alone.close()
        ss = [gpu.open_gpu_session(gm, 64) for _ in range(3)]
        try:
            gm.eval_batch(ss, ids, all_logits=[True, False, False], logits=[True, False, True])
            assert np.array_equal(ss[0].logits(), want_all)
            with pytest.raises(RealmError):
                ss[1].logits()
            assert ss[1].tokens() == ids[1]
            # samplers as the CPU's: seeded top-k (GPU top-k), penalties (whole row), greedy
            settings = [dict(temperature=0.8, top_k=40, seed=7), dict(temperature=0.7, top_k=20, repeat_penalty=1.3,
                                                                     seed=5), dict(temperature=0)]
            refs = []
            for st, p in zip(settings, ids):
                a = gpu.open_gpu_session(gm, 64)
                a.set_sampler(SamplerSettings(**st))
                a.eval(p)
                t = [a.sample()]
                for _ in range(3):
                    t.append(a.step(t[-1]))
                refs.append(t)
                a.close()
            for s, st in zip(ss, settings):
                s.truncate(0)
                s.set_sampler(SamplerSettings(**st))
            gm.eval_batch(ss, ids)
            toks = [s.sample() for s in ss]
            out = [[t] for t in toks]
            for _ in range(3):
                toks = gm.step_batch(ss, toks)
                for o, t in zip(out, toks):
                    o.append(t)
            assert out == refs
        finally:
            for s in ss:
                s.close()
    finally:
        _release(gm)


def test_bad_batches_refused_and_nothing_changes(dev, default_model_path):
    from realm_web import gpu, store
    from realm_web.errors import ContextOverflowError, RealmError
    gm = _open(default_model_path)
    try:
        a, b, c = gpu.open_gpu_session(gm, 16), gpu.open_gpu_session(gm, 8), gpu.open_gpu_session(gm, 16)
        closed = gpu.open_gpu_session(gm, 16)
        closed.close()
        gm.eval_batch([a, b, c], [[1, 2, 3], [4, 5], [6]])
        before = [(s.tokens(), s.logits().copy()) for s in (a, b, c)]
        V = gm.info.n_vocab
        cases = [
            (ContextOverflowError, 1, lambda: gm.step_batch([a, b, c], [7, list(range(10, 17)), 8])),  # b: 2 + 7 > 8
            (RealmError, 2, lambda: gm.eval_batch([a, b, c], [[7], [8], [V]])),                     # id out of range
            (RealmError, 1, lambda: gm.eval_batch([a, a], [[7], [8]])),                             # duplicate
            (RealmError, 1, lambda: gm.eval_batch([a, closed], [[7], [8]])),                        # closed
            (RealmError, 1, lambda: gm.eval_batch([a, b], [[7], []])),                              # empty chunk
            (RealmError, None, lambda: gm.eval_batch([a, b], [[7]])),                               # 2 sessions, 1 chunk
            (RealmError, None, lambda: gm.eval_batch([a, c], [[7] * 40, [8] * 40])),                # over max_batch
            (RealmError, None, lambda: gm.eval_batch([], [])),
        ]
        for cls, index, call in cases:
            with pytest.raises(cls) as e:
                call()
            assert getattr(e.value, "session_index", "missing") == index, (str(e.value), index)
        for s, (toks, lg) in zip((a, b, c), before):
            assert s.tokens() == toks
            assert np.array_equal(s.logits(), lg)
        # and the caches are untouched: the next batched step equals the same step alone
        gm.eval_batch([a, b, c], [[9], [9], [9]])
        ref = gpu.open_gpu_session(gm, 16)
        ref.eval([1, 2, 3, 9])
        assert np.array_equal(a.logits(), ref.logits())
        ref.close()
        # CPU sessions are not GPU sessions
        from realm_web.core_model import Session
        cm = store.acquire(default_model_path)
        cs = Session(cm, 16)
        try:
            with pytest.raises(RealmError) as e:
                gm.eval_batch([a, cs], [[1], [2]])
            assert e.value.session_index == 1
        finally:
            cs.close()
            store.release(cm)
        for s in (a, b, c):
            s.close()
    finally:
        _release(gm)


def test_gpu_model_batch_api(dev, default_model_path):
    """The tests above go through CoreModel.eval_batch / step_batch (the scheduler's API, which
    hands GPU sessions to the GPU batch); GpuModel has the same three methods."""
    from realm_web import gpu
    gm = _open(default_model_path)
    try:
        ids = [gm.tokenize(p) for p in PROMPTS[:2]]
        ss = [gpu.open_gpu_session(gm, 32) for _ in ids]
        g = ss[0].gmodel
        try:
            assert g.batch_max_tokens() == g.plan.max_batch == 64
            g.eval_batch(ss, ids)
            toks = g.step_batch(ss, [int(s.logits()[-1].argmax()) for s in ss])
            assert len(toks) == 2 and all(s.n_past == len(p) + 1 for s, p in zip(ss, ids))
        finally:
            for s in ss:
                s.close()
    finally:
        _release(gm)


def test_step_batch_with_prompt_chunks_that_do_not_sample(dev, default_model_path):
    """step_batch(sample=[...]) as the server's scheduler calls it: a prompt chunk that is not
    its prompt's last computes no logits and gets -1; the others sample as alone."""
    from realm_web import gpu
    gm = _open(default_model_path)
    try:
        a, b = (gm.tokenize(p) for p in PROMPTS[:2])
        want = [int(alone_run(gm, p, 0)[1][0].argmax()) for p in (a, b)]
        ss = [gpu.open_gpu_session(gm, 64) for _ in range(2)]
        try:
            half = len(b) // 2
            out = gm.step_batch(ss, [a, b[:half]], sample=[True, False])
            assert out[0] == want[0] and out[1] == -1
            out = gm.step_batch(ss, [[out[0]], b[half:]], sample=[True, True])
            assert out[1] == want[1] and ss[1].n_past == len(b)
        finally:
            for s in ss:
                s.close()
    finally:
        _release(gm)
