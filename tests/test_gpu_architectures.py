"""The GPU plan (core/api_gpu.c, wgsl/) on the architectures beyond llama/qwen2/qwen3:
gemma3 (the built-in gemma3-270m and a synthetic one past its window) and gemma2
(soft-capping, pre-scaled queries), against the CPU core bit for bit on lavapipe.

What the kernels add, each checked against the core's own code first:
- GeGLU (swiglu.wgsl ACT=1): the core reads gelu from ggml's table over f16 inputs; the
  kernel computes it with the core's tanh (exact.wgsl tanh_rt), so every f16 input is
  compared (all 65536: a proof, not a sample);
- soft-capping (softcap.wgsl, attention.wgsl cap): the core's tanh, to its bits, over
  values from 1e-30 to past the clamp;
- sliding windows, their own RoPE table ("ropes": rope_swa), post-norms, sqrt(n_embd)
  embeddings, q times attn_scale after RoPE: whole models, teacher-forced (every logit
  equal at every step), greedy continuations equal, and batched == alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from gpu_helpers import core, gpu_device, run
from test_architectures import GEMMA2, GEMMA3, MOE, PHI3
from test_gpu_batch import check_batched_equals_alone
from test_gpu_model import compare, greedy_steps

pytestmark = pytest.mark.timeout(1800)

PROMPT = ["Hello there, my good friend"]


@pytest.fixture(scope="module")
def dev():
    return gpu_device()


@pytest.fixture(scope="module")
def cpu():
    return core()


def _bufs():
    from realm_web.gpu import buffers
    return buffers


def _cpu_call(c, name, arrays, *args):
    """The core's export `name` on copies of arrays (f32), in place; the arrays after."""
    ptrs = []
    try:
        for a in arrays:
            p = c.alloc(a.nbytes)
            c.write(p, np.ascontiguousarray(a, np.float32))
            ptrs.append(p)
        c.check(c.call(name, *ptrs, *args), name)
        return [c.view(p, np.float32, a.size).copy().reshape(a.shape) for p, a in zip(ptrs, arrays)]
    finally:
        for p in ptrs:
            c.free(p)


# ------------------------------------------------------------------ kernels vs the core
def test_geglu_every_f16_input(dev, cpu):
    """swiglu.wgsl ACT=1 == the core's geglu (ggml's f16 gelu table) for every f16 value,
    f32 values between them, the +-10 cut-offs and beyond."""
    rng = np.random.default_rng(11)
    allh = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    allh = allh[np.isfinite(allh)]
    extra = np.concatenate([rng.uniform(-12, 12, 20000).astype(np.float32),
                            np.array([-10, 10, -10.0001, 9.9999, 1e-8, -1e-8, 0.0, -0.0, 300, -300], np.float32)])
    g = np.concatenate([allh, extra]).astype(np.float32)
    u = rng.uniform(0.5, 2, g.size).astype(np.float32)
    want = _cpu_call(cpu, "realm_quant_geglu", [g, u], g.size)[0]
    b = _bufs()
    gb, ub = b.storage(dev, g.nbytes, data=g), b.storage(dev, u.nbytes, data=u)
    run(dev, "swiglu.wgsl", [gb, ub], (-(-g.size // 64), 1, 1), params=[g.size, g.size, 0, 0], step=(1, 0, 0, 0),
        constants={"WG": 64, "ACT": 1})
    got = b.read(dev, gb, np.float32, g.size)
    bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{bad.size} differ, first at g={g[bad[0]]!r}: {got[bad[0]]!r} vs {want[bad[0]]!r}"
    assert np.abs(want).max() > 100 and (want == 0).sum() > 100    # both cut-offs were reached


@pytest.mark.parametrize("cap", [30.0, 50.0, 3.0])
def test_softcap_is_the_cores_tanh(dev, cpu, cap):
    """softcap.wgsl == the core's tanh(y / cap) * cap to the bit: normal values, tiny ones
    (where the core's double e - 1 is coarse), the +-20 clamp and past it."""
    rng = np.random.default_rng(int(cap))
    y = np.concatenate([rng.standard_normal(60000) * cap, rng.standard_normal(20000) * 5,
                        np.exp(rng.uniform(np.log(1e-30), np.log(1.0), 40000)) * rng.choice([-1, 1], 40000),
                        np.linspace(-21 * cap, 21 * cap, 4001), [0.0, -0.0, 20 * cap, -20 * cap]]).astype(np.float32)
    want = _cpu_call(cpu, "realm_quant_softcap", [y], y.size, float(cap))[0]
    b = _bufs()
    R = 4
    n = -(-y.size // R)
    yy = np.zeros(n * R, np.float32)
    yy[:y.size] = y
    yb = b.storage(dev, yy.nbytes, data=yy)
    p = [n, n, int(np.float32(cap).view(np.uint32)), int((np.float32(1) / np.float32(cap)).view(np.uint32)), 0, 0, 0, 0]
    run(dev, "softcap.wgsl", [yb], (-(-n // 64), 1, R), params=p, step=(R, 0, 0, 0), constants={"WG": 64})
    got = b.read(dev, yb, np.float32, n * R)[:y.size]
    bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{bad.size} differ, first at y={y[bad[0]]!r}: {got[bad[0]]!r} vs {want[bad[0]]!r}"
    assert np.abs(want).max() <= cap and np.abs(want).max() > 0.99 * cap


# ------------------------------------------------------------------ whole models
def _exact(path, prompts, n_tokens, n_ctx=64):
    worst, steps = compare(path, prompts, n_tokens, n_ctx=n_ctx)
    assert steps == n_tokens * len(prompts) and worst == 0.0, worst


def _gemma3(synthetic_model, qtype="Q8_0"):
    return synthetic_model(arch="gemma3", qtype=qtype, **GEMMA3)


def _gemma2(synthetic_model, qtype="Q8_0"):
    return synthetic_model(arch="gemma2", qtype=qtype, **GEMMA2)


def test_gemma3_plan(synthetic_model):
    """The plan runs gemma3: a second RoPE table for the sliding-window layers, post-norms as
    in-place norms and residual adds, GeGLU, the embedding scale, windows on 5 of 6 layers."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    m = store.acquire(_gemma3(synthetic_model), vocab_only=True)
    try:
        plan = build_plan(m, _words())
        d = plan.data
        assert d["ropes"] == [{"buffer": "rope", "swa": 0}, {"buffer": "rope_swa", "swa": 1}]
        assert {"rope", "rope_swa"} <= {b["name"] for b in d["buffers"] if b["per_session"]}
        body = plan.programs["body"]
        att = [o for o in body if o["label"].endswith(".attention")]
        assert [o["p"][10] for o in att] == [16, 16, 16, 16, 16, 0]
        assert [o["b"][3] for o in att] == ["rope_swa"] * 5 + ["rope"]
        assert sum(o["label"].endswith("_residual") for o in body) == 2 * GEMMA3["n_layer"]
        assert np.float32(np.uint32(body[0]["p"][6]).view(np.float32)) == np.float32(np.sqrt(np.float32(256)))
        assert any(k["file"] == "swiglu.wgsl" and k["constants"]["ACT"] == 1 for k in plan.kernels)
        assert not any(k["file"] == "softcap.wgsl" for k in plan.kernels)
    finally:
        store.release(m)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K_M"])
def test_gemma3_synthetic_equals_the_cpu_past_the_window(dev, synthetic_model, llama_quantized, qtype):
    """Teacher-forced 20 tokens after the prompt, past the window of 16: every logit equal
    (Q4_K_M: llama.cpp's own quantization of the F32 file, K-quants)."""
    path = _gemma3(synthetic_model) if qtype == "Q8_0" else llama_quantized(_gemma3(synthetic_model, "F32"), qtype)
    _exact(path, PROMPT, 20)


def test_gemma3_synthetic_greedy_and_batched(dev, synthetic_model):
    path = _gemma3(synthetic_model)
    g, c = greedy_steps(path, PROMPT[0], 24, n_ctx=64)
    assert g == c and len(g) == 24
    check_batched_equals_alone(path, ["Hello there", "The cat sat on the mat and then", "A"], 18, [0, 2, 5])


@pytest.mark.slow
def test_gemma3_270m_equals_the_cpu(dev):
    """The built-in gemma3-270m (Q4_K_M: Q4_K, Q6_K, Q8_0 embeddings; 262144-token vocabulary)
    on the GPU: teacher-forced logits equal to the CPU's, a greedy continuation equal, and two
    sessions batched give each the logits it gets alone."""
    from realm_web.default_model import gemma3_270m_path
    path = gemma3_270m_path()
    _exact(path, ["The capital of France is"], 3)
    g, c = greedy_steps(path, "Once upon a time", 4, n_ctx=64)
    assert g == c
    check_batched_equals_alone(path, ["The capital of France is", "1, 2, 3,"], 3, [0, 1])


@pytest.mark.slow
def test_gemma3_270m_realm_on_the_gpu(dev):
    """The user's path: Realm.load("gemma3-270m", device="gpu") generates the CPU's text
    (Realm.generate_batch runs on the CPU only; GPU batches: GpuModel.eval_batch, above)."""
    from realm_web import Realm
    prompts = ["The capital of France is", "1, 2, 3,"]
    cpu = Realm.load("gemma3-270m", n_ctx=128)
    try:
        want = [cpu.generate(p, max_tokens=6, temperature=0) for p in prompts]
    finally:
        cpu.close()
    gpu = Realm.load("gemma3-270m", n_ctx=128, device="gpu")
    try:
        assert gpu.device == "gpu"
        assert [gpu.generate(p, max_tokens=6, temperature=0) for p in prompts] == want
    finally:
        gpu.close()


def test_gemma2_synthetic_equals_the_cpu(dev, synthetic_model):
    """Soft-capped scores and logits (caps 20 / 10: they bite), q times 1/sqrt(head_dim) after
    RoPE, a window of 16 on every other layer: teacher-forced past the window, every logit
    equal; greedy continuations equal."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    path = _gemma2(synthetic_model)
    m = store.acquire(path, vocab_only=True)
    try:
        plan = build_plan(m, _words())
    finally:
        store.release(m)
    att = [o for o in plan.programs["body"] if o["label"].endswith(".attention")]
    f32 = lambda w: float(np.uint32(w).view(np.float32))                       # noqa: E731
    assert [o["p"][10] for o in att] == [16, 0, 16, 0] and {f32(o["p"][11]) for o in att} == {20.0}
    assert {f32(o["p"][8]) for o in att} == {1.0} and {f32(o["p"][13]) for o in att} == {f32(np.float32(1 / 8).view(np.uint32))}
    for prog in ("head", "head_rows"):
        assert [f32(o["p"][2]) for o in plan.programs[prog] if o["label"] == "final_softcap"] == [10.0]
    _exact(path, PROMPT, 20)
    g, c = greedy_steps(path, PROMPT[0], 20, n_ctx=64)
    assert g == c and len(g) == 20


def test_gemma2_batched_equals_alone(dev, synthetic_model):
    check_batched_equals_alone(_gemma2(synthetic_model), ["Hello there", "The cat sat on the mat and then", "A"],
                               18, [0, 2, 5])


# ------------------------------------------------------------------ phi3
def _phi3(synthetic_model, orig=64):
    return synthetic_model(arch="phi3", qtype="Q8_0", n_ctx_orig=orig, **PHI3)


def test_phi3_plan(synthetic_model):
    """Fused attn_qkv and ffn_up become row views (their own tensors at the rows' file offsets),
    rotary on 32 of 64 dimensions, q pre-scaled, the long factors for contexts past 64."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    m = store.acquire(_phi3(synthetic_model), vocab_only=True)
    try:
        plan = build_plan(m, _words())
    finally:
        store.release(m)
    t = {x["name"]: x for x in plan.tensors}
    q, k, v = (t[f"blk.0.attn_{w}.weight"] for w in "qkv")
    assert (q["ne1"], k["ne1"], v["ne1"]) == (256, 256, 256)
    assert k["offset"] == q["offset"] + 256 * q["row_bytes"] and v["offset"] == k["offset"] + 256 * k["row_bytes"]
    g, u = t["blk.0.ffn_gate.weight"], t["blk.0.ffn_up.weight"]
    assert (g["ne1"], u["ne1"]) == (512, 512) and u["offset"] == g["offset"] + 512 * g["row_bytes"]
    d = plan.data
    assert d["rope_freqs"] and d["rope_freqs_long"]["min_ctx"] == 65 and d["model"]["rope_dim"] == 32
    assert d["rope_freqs_long"]["offset"] != d["rope_freqs"]["offset"]


@pytest.mark.parametrize("n_ctx", [64, 96], ids=["short", "long"])
def test_phi3_equals_the_cpu(dev, synthetic_model, n_ctx):
    """LongRoPE: a session of 64 tokens (the original context) uses the short factors, one of 96
    the long ones, on the GPU as on the CPU: every logit equal, greedy equal."""
    path = _phi3(synthetic_model)
    _exact(path, PROMPT, 12, n_ctx=n_ctx)
    g, c = greedy_steps(path, PROMPT[0], 12, n_ctx=n_ctx)
    assert g == c and len(g) == 12


def test_phi3_short_and_long_sessions_batched_equal_alone(dev, synthetic_model):
    """One batch, a short-context and a long-context session: each its own factors (its own RoPE
    table), each the logits it gets alone; and the factors matter (short != long)."""
    from realm_web import gpu
    gm = gpu.acquire_model(_phi3(synthetic_model))
    try:
        ids = gm.tokenize("The cat sat on the mat")
        alone = []
        for n_ctx in (64, 96):
            s = gpu.open_gpu_session(gm, n_ctx)
            s.eval(ids, all_logits=True)
            alone.append(s.logits().copy())
            s.close()
        assert np.abs(alone[0] - alone[1]).max() > 1e-3
        ss = [gpu.open_gpu_session(gm, n) for n in (64, 96)]
        try:
            gm.eval_batch(ss, [ids, ids], all_logits=True)
            for s, want in zip(ss, alone):
                assert np.array_equal(s.logits(), want)
        finally:
            for s in ss:
                s.close()
    finally:
        from realm_web import store
        store.release(gm)


# ------------------------------------------------------------------ mixture of experts
def test_moe_plan(synthetic_model):
    """qwen3moe: the router matmul, moe.wgsl ROUTE (softmax, top-2, renormalised), the expert
    matmuls selected on the GPU (matmul.wgsl EXPERTS: one op per kind, 2 slots per token),
    the combine into x; no host readback anywhere in the body."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    m = store.acquire(synthetic_model(arch="qwen3moe", qtype="Q8_0", **MOE), vocab_only=True)
    try:
        plan = build_plan(m, _words())
    finally:
        store.release(m)
    body = plan.programs["body"]
    route = [o for o in body if o["label"].endswith("moe_route")]
    assert len(route) == MOE["n_layer"] and route[0]["p"][:3] == [8, 2, 1]
    ex = [o for o in body if plan.kernels[o["k"]]["file"] == "matmul.wgsl" and "EXPERTS" in plan.kernels[o["k"]]["defines"]]
    assert len(ex) == 3 * MOE["n_layer"] and all(o["b"][3] == "moe_sel" and o["g"][1] == [2, 0] for o in ex)
    t = {x["name"]: x for x in plan.tensors}
    assert t["blk.0.ffn_gate_exps.weight"]["ne1"] == 8 * 256


@pytest.mark.parametrize("arch", ["qwen3moe", "qwen2moe"])
def test_moe_equals_the_cpu(dev, synthetic_model, arch):
    """Router softmax and top-k on the GPU, experts chosen by index, qwen3moe's renormalised
    weights, qwen2moe's shared expert and sigmoid gate: every logit equal, greedy equal."""
    path = synthetic_model(arch=arch, qtype="Q8_0", **MOE)
    _exact(path, PROMPT, 12)
    g, c = greedy_steps(path, PROMPT[0], 12, n_ctx=64)
    assert g == c and len(g) == 12


@pytest.mark.parametrize("arch", ["qwen3moe", "qwen2moe"])
def test_moe_batched_equals_alone(dev, synthetic_model, arch):
    check_batched_equals_alone(synthetic_model(arch=arch, qtype="Q8_0", **MOE),
                               ["Hello there", "The cat sat on the mat and then", "A"], 10, [0, 2, 5])


def test_moe_experts_split_across_parts(dev, synthetic_model):
    """Expert tensors larger than a binding are split by whole experts; each part's op stores
    only its experts' slots: the same logits as unsplit (and the CPU's)."""
    from realm_web import gpu, store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    path = synthetic_model(arch="qwen3moe", qtype="F32", **MOE)
    m = store.acquire(path, vocab_only=True)
    try:
        limit = 3 * 256 * 256 * 4 + 1024   # three experts' F32 gate matrix per part, and some
        plan = build_plan(m, _words(max_binding=limit))
        t = {x["name"]: x for x in plan.tensors}
        parts = t["blk.0.ffn_gate_exps.weight"]["parts"]
        assert len(parts) == 3 and [p["rows"] for p in parts] == [768, 768, 512]
    finally:
        store.release(m)
    worst, steps = compare(path, PROMPT, 6, n_ctx=64, max_binding=limit)
    assert steps == 6 and worst == 0.0
