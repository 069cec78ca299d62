"""Continuous batching (GitHub issue 12): realm_batch_eval / realm_batch_step run
several sessions of one model through one forward pass, each contributing a
prompt chunk or one decode token.

Every value of a row is computed by the same operations whichever rows it
shares a step with (the matmul kernels' tile and one-token paths sum each
(row, token) pair alike, see core/quant_impl.h; norms, RoPE and activation
quantization go row by row, attention by (row, head)), so the reference is
exact: each session run alone with Session.eval, the whole prompt at once and
then one token at a time. Batched logits must equal it bit for bit, and so
must greedy continuations, on files covering Q4_1, Q8_0, F16, llama.cpp's
K-quants and a head_dim (6) that takes the scalar attention loop, on 1 and
2 threads and in the relaxed-SIMD build.

Bad input (a closed, freed or foreign session, one session twice, an empty
chunk, a step over the token budget, a full context, a bad id or flag) is
refused with a message naming the session, before anything changes: the
other sessions go on as if the failed call never happened.
"""
from __future__ import annotations

import numpy as np
import pytest

from realm_web import wasm_host
from realm_web.core_model import CoreModel, SamplerSettings, Session
from realm_web.errors import ContextOverflowError, RealmError
from realm_web.wasm_host import WasmCore

ST = wasm_host._WASM_DIR / "realm.wasm"
MT = wasm_host._WASM_DIR / "realm-mt.wasm"
MT_RELAXED = wasm_host._WASM_DIR / "realm-mt-relaxed.wasm"

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (ST, MT, MT_RELAXED)),
                                reason="run `python build.py` first")

RNG = np.random.default_rng(12)
# five streams: prompt lengths, tokens to generate, the step at which each joins
PROMPTS = [[int(x) for x in RNG.integers(200, 8000, n)] for n in (1, 9, 37, 70, 4)]
N_GEN = [6, 8, 3, 5, 9]
JOIN = [0, 0, 1, 2, 4]
CHUNK = 16      # prefill chunk per step
N_CTX = 96


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(np.asarray(a, np.float32).view(np.uint32),
                                                 np.asarray(b, np.float32).view(np.uint32))


def alone(model: CoreModel, prompt: list[int], n_gen: int):
    """(last-row logits after the prompt and after each generated token, greedy ids), unbatched."""
    s = Session(model, N_CTX)
    try:
        s.eval(prompt)
        rows = [np.array(s.logits()[-1], copy=True)]
        ids = []
        for _ in range(n_gen):
            ids.append(int(rows[-1].argmax()))
            if len(ids) == n_gen:
                break
            s.eval([ids[-1]])
            rows.append(np.array(s.logits()[-1], copy=True))
        return rows, ids
    finally:
        s.close()


def batched(model: CoreModel, prompts=PROMPTS, n_gen=N_GEN, join=JOIN):
    """The same streams through eval_batch: each step, streams in prefill add a chunk
    (within the step's budget), streams in decode their last token; streams join late
    and leave when done, so steps hold 1..5 sessions mixing chunks and decode tokens."""
    budget = model.batch_max_tokens()
    n = len(prompts)
    ss = [Session(model, N_CTX) for _ in range(n)]
    done = [0] * n                       # prompt tokens evaluated
    rows = [[] for _ in range(n)]
    ids = [[] for _ in range(n)]
    sizes = set()
    try:
        step = 0
        while any(len(ids[i]) < n_gen[i] for i in range(n)):
            group, chunks, room = [], [], budget
            for i in range(n):
                if step < join[i] or len(ids[i]) >= n_gen[i] or room == 0:
                    continue
                if done[i] < len(prompts[i]):
                    ch = prompts[i][done[i]:done[i] + min(CHUNK, room)]
                else:
                    ch = [ids[i][-1]]
                group.append(i)
                chunks.append(ch)
                room -= len(ch)
            step += 1
            if not group:
                continue
            sizes.add(len(group))
            model.eval_batch([ss[i] for i in group], chunks)
            for i, ch in zip(group, chunks):
                if done[i] < len(prompts[i]):
                    done[i] += len(ch)
                    if done[i] < len(prompts[i]):
                        continue     # mid-prompt: logits of this chunk are not compared
                row = np.array(ss[i].logits()[-1], copy=True)
                rows[i].append(row)
                ids[i].append(int(row.argmax()))
        return rows, ids, sizes
    finally:
        for s in ss:
            s.close()


@pytest.fixture(scope="module", params=["default", "Q8_0", "F16", "K", "head_dim6"])
def model_path(request, default_model_path, requantized, synthetic_model, llama_quantized):
    if request.param == "default":
        return default_model_path
    if request.param == "K":  # every matrix a K type (768-wide synthetic LLaMA, llama.cpp's quantizer)
        return llama_quantized(synthetic_model(n_layer=2), "Q4_K_M")
    if request.param == "head_dim6":  # 16 heads of 6: attention's scalar loop
        return synthetic_model(n_layer=2, n_embd=96, n_ff=256, n_head=16, n_head_kv=4)
    return requantized(request.param)


def test_batched_sessions_compute_what_each_computes_alone(model_path):
    core = WasmCore(path=ST)
    model = CoreModel(model_path, core=core, threads=1)
    try:
        ref = [alone(model, p, g) for p, g in zip(PROMPTS, N_GEN)]
    finally:
        model.close()
        core.close()
    for module, threads in ((ST, 1), (MT, 2), (MT_RELAXED, 2)):
        core = WasmCore(path=module)
        model = CoreModel(model_path, core=core, threads=threads)
        try:
            assert model.threads == threads
            rows, ids, sizes = batched(model)
        finally:
            model.close()
            core.close()
        assert sizes == {1, 2, 3, 4, 5}
        what = f"{module.name} on {threads} thread(s)"
        for i, (ref_rows, ref_ids) in enumerate(ref):
            assert ids[i] == ref_ids, f"{what}: stream {i}'s greedy continuation differs"
            assert len(rows[i]) == len(ref_rows)
            for k, (a, b) in enumerate(zip(rows[i], ref_rows)):
                assert same_bits(a, b), f"{what}: stream {i}, step {k}: logits differ from the session alone"


def test_tile_and_one_token_kernels_give_the_same_bits(model_path):
    """The premise of batching: a token's logits do not depend on the tokens it shares a
    forward pass with (T = 2: one-token kernels per token; 3, 5, 70: 4-token tiles, a
    repeated last token, leftovers one by one, two passes of 64 and 6)."""
    core = WasmCore(path=MT_RELAXED)
    model = CoreModel(model_path, core=core, threads=2)
    s = Session(model, N_CTX)
    try:
        ids = PROMPTS[3]
        for n in (2, 3, 5, 70):
            s.truncate(0)
            s.eval(ids[:n], all_logits=True)
            together = np.array(s.logits(), copy=True)
            s.truncate(0)
            one = []
            for t in ids[:n]:
                s.eval([t])
                one.append(np.array(s.logits()[-1], copy=True))
            assert same_bits(together, np.stack(one)), f"{n} tokens in one eval differ from {n} one-token evals"
    finally:
        s.close()
        model.close()
        core.close()


@pytest.fixture(scope="module")
def model(default_model_path):
    m = CoreModel(default_model_path, threads=2)
    yield m
    m.close()


def test_all_logits_and_no_logits_rows(model):
    """A chunk with all_logits gets every row (as Session.eval(all_logits=True)); logits=False gets none."""
    a, b, c = (Session(model, N_CTX) for _ in range(3))
    try:
        a.eval(PROMPTS[1][:3])
        ref = Session(model, N_CTX)
        ref.eval(PROMPTS[1][:3])
        ref.eval(PROMPTS[2][:20], all_logits=True)
        want = np.array(ref.logits(), copy=True)
        ref.close()
        model.eval_batch([b, a, c], [[5, 6], PROMPTS[2][:20], [7]], all_logits=[False, True, False],
                         logits=[True, True, False])
        assert same_bits(a.logits(), want)
        assert b.logits().shape[0] == 1 and c.logits().shape[0] == 0
        with pytest.raises(RealmError, match="nothing to sample"):
            c.sample()
        assert (a.n_past, b.n_past, c.n_past) == (23, 2, 1)
    finally:
        for s in (a, b, c):
            s.close()


def test_step_batch_samples_with_each_sessions_own_sampler(model):
    settings = [SamplerSettings(temperature=0.9, seed=7), SamplerSettings(temperature=0),
                SamplerSettings(temperature=1.2, top_k=5, seed=99, repeat_penalty=1.1)]
    prompts = [PROMPTS[1], PROMPTS[2][:30], PROMPTS[4]]
    want = []
    for st, p in zip(settings, prompts):
        s = Session(model, N_CTX)
        s.set_sampler(st)
        s.eval(p)
        out = [s.sample()]
        for _ in range(6):
            out.append(s.step(out[-1]))
        want.append(out)
        s.close()
    ss = [Session(model, N_CTX) for _ in prompts]
    try:
        for s, st in zip(ss, settings):
            s.set_sampler(st)
        got = [[t] for t in model.step_batch(ss, prompts)]  # the prompts' last (only) chunks
        for _ in range(6):
            for g, t in zip(got, model.step_batch(ss, [g[-1] for g in got])):
                g.append(t)
        assert got == want
    finally:
        for s in ss:
            s.close()


def state(s: Session):
    return s.n_past, s.tokens(), np.array(s.logits(), copy=True)


def test_bad_batches_are_refused_and_change_nothing(model, default_model_path):
    ss = [Session(model, 40) for _ in range(3)]
    other = CoreModel(default_model_path, threads=1)
    foreign = Session(other, 40)
    assert foreign.handle not in {s.handle for s in ss}  # (an address in the other instance)
    gone = Session(model, 40)
    stale = type("Stale", (), {"handle": gone.handle})()
    gone.close()
    closed = Session(model, 40)
    closed.close()
    try:
        model.eval_batch(ss, [PROMPTS[1], PROMPTS[2][:30], PROMPTS[4]])
        before = [state(s) for s in ss]
        budget = model.batch_max_tokens()
        assert budget == 64
        bad = [
            ([ss[0], closed, ss[2]], [[1], [2], [3]], 1, RealmError, "session 1 of 3: null session handle"),
            ([ss[0], ss[1], stale], [[1], [2], [3]], 2, RealmError, "session 2 of 3: not a live session"),
            ([foreign, ss[1]], [[1], [2]], 0, RealmError, "session 0 of 2: not a live session of this model"),
            ([ss[0], ss[1], ss[0]], [[1], [2], [3]], 2, RealmError, "the same session as batch session 0"),
            ([ss[0], ss[1]], [[1], []], 1, RealmError, "session 1 of 2: no tokens"),
            ([ss[0], ss[1], ss[2]], [[1], [2] * 60, [3] * 4], None, RealmError, f"65 tokens in one step exceed the core's budget of {budget}"),
            ([ss[0], ss[1], ss[2]], [[1], [2] * 11, [3]], 1, ContextOverflowError, "session 1 of 3: context full: 30 tokens"),
            ([ss[0], ss[1], ss[2]], [[1], [2], [3, model.info.n_vocab]], 2, RealmError, "session 2 of 3: token id 49152 is out of range"),
            ([], [], None, RealmError, "empty batch"),
        ]
        for sessions, chunks, index, exc, msg in bad:
            with pytest.raises(exc, match=msg) as e:
                model.eval_batch(sessions, chunks)
            assert e.value.session_index == index, msg
            for s, (n_past, toks, logits) in zip(ss, before):
                assert s.n_past == n_past and s.tokens() == toks and same_bits(s.logits(), logits), msg
        with pytest.raises(RealmError, match="session 1 of 2: bad flags 3"):
            model._batch("realm_batch_eval", ss[:2], [[1], [2]], [0, 3])
        # the same sessions then go on exactly as sessions that never saw those calls
        nxt = [int(b[2][-1].argmax()) for b in before]
        model.eval_batch(ss, [[t] for t in nxt])
        for s, p, t in zip(ss, [PROMPTS[1], PROMPTS[2][:30], PROMPTS[4]], nxt):
            ref = Session(model, 40)
            ref.eval(p + [t])
            assert same_bits(s.logits(), ref.logits())
            ref.close()
    finally:
        for s in ss + [foreign]:
            s.close()
        other.close()


def test_a_stream_cancelled_mid_batch_does_not_disturb_the_others(model):
    """A host frees a cancelled stream's session while the next step still lists it:
    the step is refused naming it; without it, the other streams continue unchanged."""
    prompts, n_gen = PROMPTS[:3], [8, 8, 8]
    ref = [alone(model, p, g) for p, g in zip(prompts, n_gen)]
    ss = [Session(model, N_CTX) for _ in prompts]
    try:
        model.eval_batch(ss, prompts)
        toks = [int(s.logits()[-1].argmax()) for s in ss]
        got = [[t] for t in toks]
        for step in range(1, 8):
            if step == 3:
                handle = ss[1].handle
                ss[1].close()
                stale = type("Stale", (), {"handle": handle})()
                with pytest.raises(RealmError, match="batch session 1 of 3: not a live session") as e:
                    model.eval_batch([ss[0], stale, ss[2]], [[got[0][-1]], [got[1][-1]], [got[2][-1]]])
                assert e.value.session_index == 1
            live = [0, 2] if step >= 3 else [0, 1, 2]
            model.eval_batch([ss[i] for i in live], [[got[i][-1]] for i in live])
            for i in live:
                got[i].append(int(ss[i].logits()[-1].argmax()))
        assert got[0] == ref[0][1] and got[2] == ref[2][1]
        assert got[1] == ref[1][1][:3]
    finally:
        for s in ss:
            s.close()
