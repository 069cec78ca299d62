"""LoRA adapters on the WebGPU backend (issue 13): the core's LoRA plan (core/api_gpu.c,
realm_gpu_lora_plan) run by wgpu-py on lavapipe, against the CPU core and llama.cpp.

The GPU computes the adapters' term as core/lora.c does, operation for operation (the same
matmul kernels on the same A and B bytes, F16 halves widened to F32 with their activations
rounded to f16, Q8_0 activations, `y += s * t` unfused), so the logits are the CPU core's
**bit for bit** (np.array_equal, no tolerance); against llama.cpp (llama-cpp-python, the
same adapter) the bound is tests/test_lora.py's (KL per row), which the CPU core meets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from forward_helpers import kl_rows as _kl
import refmodels
from gpu_helpers import gpu_device
from realm_web import Realm, gpu, lora, store
from realm_web.core_model import Session
from realm_web.errors import RealmError

pytestmark = pytest.mark.timeout(1800)

SYN = dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)


def _ids(n, hi, seed=13):
    return [int(t) for t in np.random.default_rng(seed).integers(100, hi, n)]


@pytest.fixture(scope="module")
def dev():
    return gpu_device()


@pytest.fixture(scope="module")
def syn(synthetic_model):
    return synthetic_model(**SYN)


@pytest.fixture(scope="module")
def cm(syn):
    m = store.acquire(str(syn))
    yield m
    store.release(m)


@pytest.fixture(scope="module")
def gm(syn, dev):
    m = gpu.acquire_model(str(syn))
    yield m
    store.release(m)


def _logits(model, ids, adapters=(), gpu_session=False, steps=0, **plan_options):
    """All logits of ids with adapters [(path, scale)], then the last logits after each of
    `steps` single-token evals (decode: the matrix-vector kernels)."""
    n_ctx = len(ids) + steps + 8
    s = gpu.open_gpu_session(model, n_ctx, **plan_options) if gpu_session else Session(model, n_ctx)
    held = [(lora.acquire(model, p), sc) for p, sc in adapters]
    try:
        s.set_lora(held)
        s.eval(ids, all_logits=True)
        rows = [np.array(s.logits())]
        for t in _ids(steps, SYN["n_vocab"], seed=99):
            s.eval([t])
            rows.append(np.array(s.logits())[-1:])
        return np.concatenate(rows)
    finally:
        s.close()
        for a, _ in held:
            lora.release(a)


# ---------------------------------------------------------------- the plans (no GPU needed)
OPTS = {"version": 1, "flags": 4}  # a software adapter, WebGPU's default limits


def test_plan_hooks_and_lora_plan(syn, cm):
    """The base plan marks the last op of every adaptable matmul with its slot (lora.h's
    numbering), and the LoRA plan lists A/B tensors (the file's types) and ops after them."""
    from realm_web.gpu.plan import build_lora_plan, build_plan, gpu_options  # noqa: F401
    gmc = store.acquire(str(syn), vocab_only=True)
    try:
        gpu.prepare_model(gmc)
        plan = build_plan(gmc, OPTS)
        body = plan.programs["body"]
        hooks = [o["hook"] for o in body if "hook" in o]
        assert hooks == list(range(SYN["n_layer"] * 7))               # q k v o gate up down, per layer
        assert [o["hook"] for o in plan.programs["head"] if "hook" in o] == [SYN["n_layer"] * 7]
        assert [o["hook"] for o in plan.programs["head_rows"] if "hook" in o] == [SYN["n_layer"] * 7]
        # attn_output / ffn_down write xb and the residual add follows (the adapters' term goes between)
        o_ops = [i for i, o in enumerate(body) if o.get("hook") == 3]
        assert body[o_ops[0]]["b"][2] == "xb" and body[o_ops[0] + 1]["label"] == "blk.0.attn_residual"
        ad = refmodels.lora_adapter(syn, rank=16, qtype="F16", tensors=("attn_q", "ffn_down"), layers=[1])
        a = lora.acquire(gmc, ad)
        try:
            lp = build_lora_plan(gmc, OPTS, [(a, 0.5)])
            assert sorted({o["slot"] for o in lp["ops"]}) == [7, 13]
            assert [t["name"] for t in lp["tensors"]] == ["blk.1.attn_q.weight.lora_a", "blk.1.attn_q.weight.lora_b",
                                                          "blk.1.ffn_down.weight.lora_a", "blk.1.ffn_down.weight.lora_b"]
            assert {t["type"] for t in lp["tensors"]} == {1}          # F16 halves as they are in the file
            assert any(o["label"].endswith("lora_a:quantize_f16") for o in lp["ops"])   # activations rounded to f16
            adds = [o for o in lp["ops"] if o["label"].endswith("lora_add")]
            assert [np.uint32(o["p"][2]).view(np.float32) for o in adds] == [np.float32(0.5)] * 2  # alpha = rank
            assert build_lora_plan(gmc, OPTS, [(a, 0.0)])["ops"] == []  # scale 0: nothing runs
            with pytest.raises(RealmError, match="finite"):
                build_lora_plan(gmc, OPTS, [(a, float("inf"))])
            with pytest.raises(RealmError, match="twice"):
                build_lora_plan(gmc, OPTS, [(a, 1.0), (a, 1.0)])
            json.dumps(lp)
        finally:
            lora.release(a)
    finally:
        store.release(gmc)


# ---------------------------------------------------------------- logits against the CPU and llama.cpp
@pytest.mark.parametrize("case", refmodels.LORA_CASES, ids=refmodels.LORA_CASE_IDS)
def test_adapter_equals_cpu_and_llama_cpp(syn, cm, gm, llama_ref, case):
    ad = refmodels.lora_adapter(syn, **case)
    ids = _ids(24, SYN["n_vocab"])
    pairs = [(ad, 0.7)]
    mine = _logits(gm, ids, pairs, gpu_session=True, steps=3)
    cpu = _logits(cm, ids, pairs, steps=3)
    assert np.array_equal(mine, cpu), f"max diff {np.abs(mine - cpu).max()}"  # the CPU's bits: prompt and decode
    base = _logits(gm, ids, gpu_session=True)
    ref = llama_ref.llama_lora_logits(syn, ids, pairs).astype(np.float64)
    assert _kl(ref, base).mean() > 0.05                              # the adapter changes the model
    tol = 1e-3 if case["qtype"] == "Q8_0" else 1e-5                  # test_lora.py's bounds
    assert _kl(ref, mine[:len(ids)].astype(np.float64)).mean() < tol


@pytest.mark.parametrize("opts", [dict(software=False, subgroups=False), dict(software=False, force_tpr=4)],
                         ids=["gpu-tpr16", "gpu-tpr4"])
def test_gpu_kernel_variants(syn, cm, gm, opts):
    """The plan for real GPUs (matrix-vector kernels with several invocations per row, the
    adapters' rank-wide rows included) gives the same bits."""
    pairs = [(refmodels.lora_adapter(syn, rank=4, qtype="F32", alpha=16.0, tensors=("attn_k", "attn_output")), 0.7),
             (refmodels.lora_adapter(syn, rank=32, qtype="Q8_0", tensors=("ffn_gate", "ffn_down", "output.weight")), -0.6)]
    ids = _ids(10, SYN["n_vocab"], seed=8)
    assert np.array_equal(_logits(gm, ids, pairs, gpu_session=True, steps=2, **opts), _logits(cm, ids, pairs, steps=2))


def test_two_adapters_with_own_scales(syn, cm, gm, llama_ref):
    a1 = refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1)
    a2 = refmodels.lora_adapter(syn, rank=16, qtype="F16", tensors=("attn_q", "ffn_down"), seed=2)
    ids = _ids(20, SYN["n_vocab"], seed=5)
    pairs = [(a1, 0.5), (a2, -1.25)]
    mine = _logits(gm, ids, pairs, gpu_session=True, steps=2)
    assert np.array_equal(mine, _logits(cm, ids, pairs, steps=2))
    only1 = _logits(gm, ids, pairs[:1], gpu_session=True, steps=2)
    assert not np.array_equal(mine, only1)                           # the second adapter counts
    ref = llama_ref.llama_lora_logits(syn, ids, pairs).astype(np.float64)
    assert _kl(ref, mine[:len(ids)].astype(np.float64)).mean() < 1e-5


def test_scale_zero_and_removal_are_the_base_bit_for_bit(syn, cm, gm):
    ad = refmodels.lora_adapter(syn, rank=8, qtype="F32")
    ids = _ids(16, SYN["n_vocab"], seed=3)
    base = _logits(gm, ids, gpu_session=True, steps=2)
    assert np.array_equal(base, _logits(cm, ids, steps=2))
    assert np.array_equal(_logits(gm, ids, [(ad, 0.0)], gpu_session=True, steps=2), base)
    s = gpu.open_gpu_session(gm, 64)
    a = lora.acquire(gm, ad)
    try:
        assert s.set_lora([(a, 1.0)])
        s.eval(ids, all_logits=True)
        assert not np.array_equal(s.logits(), base[:len(ids)])
        assert s.set_lora([])                                        # a change of adapters empties the cache
        assert s.n_past == 0
        s.eval(ids, all_logits=True)
        assert np.array_equal(s.logits(), base[:len(ids)])
        assert not s.set_lora([])                                    # no change: the cache stays
    finally:
        s.close()
        lora.release(a)


def test_sessions_with_different_adapters_interleaved(syn, gm):
    """Two GPU sessions of one model with different adapters, stepped in turn: each gets what
    it gets alone (the adapters' buffers are shared, the scratch is each session's own)."""
    ad1 = refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1)
    ad2 = refmodels.lora_adapter(syn, rank=16, qtype="F16", seed=2)
    ids1, ids2 = _ids(9, SYN["n_vocab"], seed=31), _ids(6, SYN["n_vocab"], seed=32)
    alone1 = _logits(gm, ids1, [(ad1, 1.0)], gpu_session=True, steps=3)
    alone2 = _logits(gm, ids2, [(ad2, 0.8), (ad1, 0.3)], gpu_session=True, steps=3)
    a1, a2 = lora.acquire(gm, ad1), lora.acquire(gm, ad2)
    s1, s2 = gpu.open_gpu_session(gm, 64), gpu.open_gpu_session(gm, 64)
    try:
        s1.set_lora([(a1, 1.0)])
        s2.set_lora([(a2, 0.8), (a1, 0.3)])
        s1.eval(ids1, all_logits=True)
        s2.eval(ids2, all_logits=True)
        got1, got2 = [s1.logits()], [s2.logits()]
        for t in _ids(3, SYN["n_vocab"], seed=99):
            s2.eval([t])
            s1.eval([t])
            got1.append(s1.logits()[-1:])
            got2.append(s2.logits()[-1:])
        assert np.array_equal(np.concatenate(got1), alone1)
        assert np.array_equal(np.concatenate(got2), alone2)
    finally:
        s1.close(), s2.close()
        lora.release(a1), lora.release(a2)


def test_batch_with_different_adapters_per_session(syn, gm):
    """One forward pass of GPU sessions with different adapters (and none; one adapts the
    output head, so the head's rows run their own adapters too): every session's logits are
    those it gets alone, bit for bit, prompts with all logits and decode steps alike."""
    ad1 = refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1)
    ad2 = refmodels.lora_adapter(syn, rank=16, qtype="F16", seed=2)
    ad3 = refmodels.lora_adapter(syn, rank=32, qtype="Q8_0", tensors=("ffn_gate", "ffn_down", "output.weight"))
    sets = [[(ad1, 1.0)], [], [(ad3, 0.7)], [(ad2, 0.5), (ad1, -0.4)], [(ad3, 1.3)]]
    prompts = [_ids(4 + i, SYN["n_vocab"], seed=20 + i) for i in range(len(sets))]
    steps = 2
    alone = [_logits(gm, p, st, gpu_session=True, steps=steps) for st, p in zip(sets, prompts)]
    held = {p: lora.acquire(gm, p) for p in (ad1, ad2, ad3)}
    sessions = [gpu.open_gpu_session(gm, 64) for _ in sets]
    try:
        for s, st in zip(sessions, sets):
            s.set_lora([(held[p], sc) for p, sc in st])
        gm.eval_batch(sessions, prompts, all_logits=True)
        got = [[s.logits()] for s in sessions]
        for t in _ids(steps, SYN["n_vocab"], seed=99):
            gm.eval_batch(sessions, [[t]] * len(sessions))
            for g, s in zip(got, sessions):
                g.append(s.logits()[-1:])
        for i, (g, want) in enumerate(zip(got, alone)):
            assert np.array_equal(np.concatenate(g), want), f"session {i}"
        # step_batch (sampling in the same submission): greedy tokens as alone
        nxt = gm.step_batch(sessions, [[5]] * len(sessions))
        for s, n in zip(sessions, nxt):
            assert n == int(s.logits()[-1].argmax())
    finally:
        for s in sessions:
            s.close()
        for a in held.values():
            lora.release(a)


# ---------------------------------------------------------------- the Realm API
def test_realm_gpu_lora_and_batch_prompts(syn, dev):
    ad1 = refmodels.lora_adapter(syn, rank=8, qtype="F32", seed=1)
    ad2 = refmodels.lora_adapter(syn, rank=16, qtype="F16", seed=2)
    kw = dict(max_tokens=6, temperature=0)
    with Realm.load(str(syn), n_ctx=128) as cpu, \
            Realm.load(str(syn), n_ctx=128, device="gpu", lora=[(ad1, 1.0)]) as g:
        assert g.lora == [(str(ad1), 1.0)]
        t_base = cpu.generate("Hello", **kw)
        cpu.set_lora([(ad1, 1.0)])
        t1 = cpu.generate("Hello", **kw)
        assert t1 != t_base
        assert g.generate("Hello", **kw) == t1
        g.set_lora([(ad2, 1.5), (ad1, 0.5)])
        cpu.set_lora([(ad2, 1.5), (ad1, 0.5)])
        t2 = cpu.generate("Hello", **kw)
        assert g.generate("Hello", **kw) == t2
        g.set_lora([(ad1, 0)])
        assert g.generate("Hello", **kw) == t_base
        # a batch on the GPU, each prompt with its own adapters (or the Realm's)
        out = g.generate_batch(["Hello", {"prompt": "Hello", "lora": [(ad1, 1.0)]},
                                {"prompt": "Hello", "lora": [(ad2, 1.5), (ad1, 0.5)]}], **kw)
        assert out == [t_base, t1, t2]
        # bad adapters are refused by name and the Realm keeps its adapters
        with pytest.raises(RealmError, match="general.type is not 'adapter'"):
            g.set_lora([(str(syn), 1.0)])
        with pytest.raises(RealmError, match="finite"):
            g.set_lora([(ad1, float("nan"))])
        assert g.lora == [(str(ad1), 0.0)]
        other = refmodels.lora_adapter(refmodels.default_model_path(), rank=8, qtype="F32",
                                       tensors=("attn_q",), layers=[0])
        with pytest.raises(RealmError, match="embedding size"):
            g.set_lora([(other, 1.0)])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_adapters_on_gemma_equal_cpu(synthetic_model, dev, arch):
    """The LoRA hooks beside gemma's parts on the GPU plan: attn_output / ffn_down adapters
    before the post-norms (and gemma2's final soft-cap after everything), as the CPU core
    orders them: logits equal bit for bit, prompt and decode, past the sliding window."""
    from test_architectures import GEMMA2, GEMMA3
    path = synthetic_model(arch=arch, qtype="Q8_0", **(GEMMA2 if arch == "gemma2" else GEMMA3))
    ad = refmodels.lora_adapter(path, rank=8, qtype="F16", seed=5, tensors=("attn_q", "attn_output", "ffn_down"))
    cpu_m, gpu_m = store.acquire(str(path)), gpu.acquire_model(str(path))
    try:
        n_vocab = cpu_m.info.n_vocab
        ids = [int(t) for t in np.random.default_rng(3).integers(100, n_vocab, 24)]   # past gemma's window of 16
        want = _logits(cpu_m, ids, [(ad, 0.8)], steps=2)
        got = _logits(gpu_m, ids, [(ad, 0.8)], gpu_session=True, steps=2)
        assert not np.array_equal(want, _logits(cpu_m, ids, steps=2))      # the adapter counts
        assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()}"
    finally:
        store.release(gpu_m)
        store.release(cpu_m)
