"""Whole models on the WebGPU backend (realm_web/gpu) against the CPU core.

The GPU runs the core's plan (core/api_gpu.c) with the WGSL kernels of wgsl/, which
reproduce the CPU's arithmetic operation for operation; so on lavapipe the logits are
the CPU's bit for bit, and greedy continuations are equal.

The rule the comparisons follow: at every step (teacher-forced on the CPU's greedy
token) the GPU's logits may differ from the CPU's by at most MAX_LOGIT_DIFF, and the
GPU's argmax may differ from the CPU's only where the CPU's top-2 margin is below
2 * MAX_LOGIT_DIFF (then a difference within the bound could flip it).
MAX_LOGIT_DIFF, by measurement: 0.0 on lavapipe and SwiftShader, for the default
model, its requantizations, llama.cpp's K-quants and synthetic models (every kernel
gives the CPU's bits). Where the float operations differ at all, this family of
models amplifies it: SmolLM2's residual stream carries outliers of ~2e4, so the
Q8 activation blocks around them are coarse and one rounding that goes the other
way moves logits by ~0.1-0.3; merely summing a dot product in another order gave
differences of 1.3 (measured). 0.25 is well under that, so the test passes only for
an exact (or very nearly exact) GPU, and any real kernel error (several units) fails it.
"""
from __future__ import annotations


import numpy as np
import pytest

from gpu_helpers import gpu_device

pytestmark = pytest.mark.timeout(1800)

MAX_LOGIT_DIFF = 0.25
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


@pytest.fixture(scope="module")
def dev():
    return gpu_device()


def _cpu(path):
    from realm_web import store
    return store.acquire(path)


def _release(m):
    from realm_web import store
    store.release(m)


def compare(path, prompts, n_tokens, n_ctx=256, **plan_options):
    """Teacher-forced greedy comparison of GPU and CPU sessions of one file (see the module
    docstring). Returns (max |logit diff|, steps)."""
    from realm_web import gpu
    from realm_web.core_model import Session
    gm = gpu.acquire_model(path)
    cm = _cpu(path)
    g = gpu.open_gpu_session(gm, n_ctx, **plan_options)
    c = Session(cm, n_ctx)
    worst, steps = 0.0, 0
    try:
        for prompt in prompts:
            ids = gm.tokenize(prompt)
            g.truncate(0)
            c.truncate(0)
            g.eval(ids)
            c.eval(ids)
            for i in range(n_tokens):
                lg, lc = g.logits()[-1], c.logits()[-1]
                d = float(np.abs(lg - lc).max())
                worst = max(worst, d)
                top2 = np.sort(lc)[-2:]
                margin = float(top2[1] - top2[0])
                assert d <= MAX_LOGIT_DIFF, f"{prompt!r} step {i}: logits differ by {d:.4g}"
                if int(lg.argmax()) != int(lc.argmax()):
                    assert margin < 2 * MAX_LOGIT_DIFF, f"{prompt!r} step {i}: argmax differs at margin {margin:.4g}"
                tok = int(lc.argmax())
                g.eval([tok])
                c.eval([tok])
                steps += 1
    finally:
        g.close()
        c.close()
        _release(cm)
        _release(gm)
    return worst, steps


def greedy_steps(path, prompt, n, n_ctx=256, **plan_options):
    """Free-running greedy decode with step() on both (the GPU's argmax path), as token lists."""
    from realm_web import gpu
    from realm_web.core_model import SamplerSettings, Session
    gm = gpu.acquire_model(path)
    cm = _cpu(path)
    g = gpu.open_gpu_session(gm, n_ctx, **plan_options)
    c = Session(cm, n_ctx)
    try:
        out = []
        for s in (g, c):
            s.set_sampler(SamplerSettings(temperature=0))
            s.eval(gm.tokenize(prompt))
            t = [s.sample()]
            for _ in range(n - 1):
                t.append(s.step(t[-1]))
            out.append(t)
        return out
    finally:
        g.close()
        c.close()
        _release(cm)
        _release(gm)


# ------------------------------------------------------------------ the plan (core only)
def _words(max_binding=128 << 20, flags=4, sg_min=0, max_batch=64):
    return {"version": 1, "flags": flags, "max_binding": max_binding, "max_buffer": 2 << 30, "max_invocations": 256,
            "max_wg_x": 256, "max_groups": 65535, "max_wg_storage": 16384, "subgroup_min": sg_min,
            "max_batch": max_batch}


def test_plan_describes_the_default_model(default_model_path):
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    m = store.acquire(default_model_path, vocab_only=True)
    try:
        plan = build_plan(m, _words())
        info = plan.model
        assert (info["n_layer"], info["n_embd"], info["n_head"], info["n_head_kv"]) == (30, 576, 9, 3)
        size = default_model_path.stat().st_size
        names = {t["name"] for t in plan.tensors}
        assert len(plan.tensors) == 2 + 9 * 30 and "token_embd.weight" in names and "output.weight" not in names  # tied
        for t in plan.tensors:
            assert t["offset"] + t["nbytes"] <= size
            assert sum(p["rows"] for p in t["parts"]) == t["ne1"] and len(t["parts"]) == 1
        bufs = {b["name"] for b in plan.data["buffers"]}
        for prog in ("body", "head", "argmax", "topk", "softmax"):
            for op in plan.programs[prog]:
                assert 0 <= op["k"] < len(plan.kernels)
                for b in op["b"]:
                    assert (b in bufs) if isinstance(b, str) else b[0] < len(plan.tensors)
        files = {k["file"] for k in plan.kernels}
        assert {"embed.wgsl", "rmsnorm.wgsl", "quantize.wgsl", "matmul.wgsl", "rope_kv.wgsl", "attention.wgsl",
                "swiglu.wgsl", "argmax.wgsl", "topk.wgsl", "softmax.wgsl"} <= files
        # the CPU still refuses sessions: this model has no weights in wasm memory
        from realm_web.core_model import Session
        from realm_web.errors import RealmError
        with pytest.raises(RealmError):
            Session(m, 16)
    finally:
        store.release(m)


def test_plan_splits_tensors_larger_than_a_binding(default_model_path):
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    m = store.acquire(default_model_path, vocab_only=True)
    try:
        plan = build_plan(m, _words(max_binding=8 << 20))
        emb = next(t for t in plan.tensors if t["name"] == "token_embd.weight")  # 30 MB of Q8_0
        assert len(emb["parts"]) == 4
        assert all(p["nbytes"] <= 8 << 20 for p in emb["parts"])
        assert [p["row0"] for p in emb["parts"]] == [sum(q["rows"] for q in emb["parts"][:i]) for i in range(4)]
        embeds = [op for op in plan.programs["body"] if op["label"] == "token_embd.weight"]
        assert [op["b"][0] for op in embeds] == [[emb["id"], i] for i in range(4)]
        head = [op for op in plan.programs["head"] if op["b"][0] == [emb["id"], 0] or op["b"][0][0:1] == [emb["id"]]]
        assert [op["p"][5] for op in head] == [p["row0"] for p in emb["parts"]]  # y_off: each part's rows
    finally:
        store.release(m)


def test_plan_picks_kernel_variants(default_model_path):
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    m = store.acquire(default_model_path, vocab_only=True)
    try:
        def kernels(**kw):
            return build_plan(m, _words(**kw)).kernels
        soft = kernels(flags=4)
        assert all("F16" not in k["defines"] for k in soft)
        assert {k["constants"]["TPR"] for k in soft if k["file"] == "matmul.wgsl"} == {1}
        hw = kernels(flags=1 | 2, sg_min=32)  # a GPU with shader-f16 and subgroups of 32 or more
        assert all("F16" in k["defines"] for k in hw if k["file"] in ("attention.wgsl", "rope_kv.wgsl"))
        vec = [k for k in hw if k["file"] == "matmul.wgsl" and k["constants"]["TPR"] > 1]
        assert vec and all("SUBGROUPS" in k["defines"] for k in vec)
        hw8 = kernels(flags=2, sg_min=8)  # subgroups narrower than a row's invocations: workgroup memory
        assert all("SUBGROUPS" not in k["defines"] for k in hw8)
    finally:
        store.release(m)


# ------------------------------------------------------------------ the default model
def test_default_model_greedy_matches_cpu(dev, default_model_path):
    worst, steps = compare(default_model_path, PROMPTS, 16)
    assert steps == 48
    print(f"max |logit diff| over {steps} steps: {worst}")


def test_default_model_step_loop(dev, default_model_path):
    """step(): eval + GPU argmax + the core's sampler, one submission and 8 bytes per token."""
    g, c = greedy_steps(default_model_path, "The capital of France is", 12)
    assert g == c


def test_default_model_gpu_style_plan(dev, default_model_path):
    """The plan a discrete GPU gets (16 invocations per row in matrix-vector products) on lavapipe."""
    compare(default_model_path, PROMPTS[:1], 6, software=False)


def test_batches_all_logits_and_prefix_reuse(dev, default_model_path):
    from realm_web import gpu
    from realm_web.core_model import Session
    gm = gpu.acquire_model(default_model_path)
    cm = _cpu(default_model_path)
    g = gpu.open_gpu_session(gm, 64, max_batch=8)  # 20 tokens: three batches
    c = Session(cm, 64)
    try:
        ids = gm.tokenize("The history of the city begins with a small settlement on the river, where traders "
                          "met to exchange grain, salt and cloth. Over the centuries the town grew into a busy "
                          "port, its streets lined with workshops, markets and houses of stone.")[:20]
        assert len(ids) == 20
        g.eval(ids, all_logits=True)
        c.eval(ids, all_logits=True)
        lg, lc = g.logits(), c.logits()
        assert lg.shape == lc.shape == (20, gm.info.n_vocab)
        assert np.abs(lg - lc).max() <= MAX_LOGIT_DIFF
        assert g.tokens() == ids and g.n_past == 20
        g.truncate(13)
        c.truncate(13)
        g.eval(ids[13:16])
        c.eval(ids[13:16])
        assert np.abs(g.logits() - c.logits()).max() <= MAX_LOGIT_DIFF
    finally:
        g.close()
        c.close()
        _release(cm)
        _release(gm)


@pytest.mark.parametrize("settings", [
    dict(temperature=0.8, top_k=40, seed=7),
    dict(temperature=1.0, top_k=0, top_p=0.9, seed=3),      # no top-k: the whole row comes back
    dict(temperature=0.7, top_k=20, repeat_penalty=1.3, seed=5),  # penalties: the whole row
    dict(temperature=0.9, top_k=1, seed=9),
], ids=["top-k", "top-p", "penalties", "top-1"])
def test_sampling_matches_cpu(dev, default_model_path, settings):
    from realm_web import gpu
    from realm_web.core_model import SamplerSettings, Session
    gm = gpu.acquire_model(default_model_path)
    cm = _cpu(default_model_path)
    g = gpu.open_gpu_session(gm, 64)
    c = Session(cm, 64)
    try:
        out = []
        for s in (g, c):
            s.set_sampler(SamplerSettings(**settings))
            s.eval(gm.tokenize("Once upon a time"))
            t = [s.sample()]
            for _ in range(5):
                t.append(s.step(t[-1]))
            out.append(t)
        assert out[0] == out[1]
    finally:
        g.close()
        c.close()
        _release(cm)
        _release(gm)


def test_sessions_share_weights_and_errors(dev, default_model_path):
    from realm_web import gpu
    from realm_web.errors import ContextOverflowError, RealmError
    gm = gpu.acquire_model(default_model_path)
    try:
        a = gpu.open_gpu_session(gm, 8)
        b = gpu.open_gpu_session(gm, 16)
        assert a.gmodel is b.gmodel and a.gmodel.refs == 2
        with pytest.raises(ContextOverflowError):
            a.eval(list(range(9)))
        with pytest.raises(RealmError):
            a.eval([gm.info.n_vocab])
        a.eval([1, 2, 3])
        b.eval([4, 5])
        assert a.tokens() == [1, 2, 3] and b.tokens() == [4, 5]
        a.close()
        assert b.gmodel.refs == 1
        b.close()
        assert gpu.loaded() == []
    finally:
        _release(gm)


# ------------------------------------------------------------------ requantizations
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0", "Q5_1",
                                   pytest.param("F16", marks=pytest.mark.slow),
                                   pytest.param("BF16", marks=pytest.mark.slow),
                                   pytest.param("F32", marks=pytest.mark.slow)])
def test_requantized_default_model(dev, requantized, qtype):
    compare(requantized(qtype), PROMPTS[:1], 6)


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"])
def test_llama_cpp_k_quants_of_default_model(dev, llama_quantized, ftype):
    """llama.cpp's own K-quant files (with SmolLM2's 576-wide rows most tensors fall back to
    Q4_0/Q5_0/Q5_1/Q8_0; ffn_down stays a K-quant)."""
    compare(llama_quantized(None, ftype), PROMPTS[:1], 6)


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K"])
def test_synthetic_all_k_quants(dev, synthetic_model, llama_quantized, ftype):
    """A model whose every matrix is a K-quant (256-wide rows), quantized by llama.cpp."""
    src = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
    compare(llama_quantized(src, ftype), PROMPTS[:1], 6, n_ctx=64)


@pytest.mark.slow
def test_model_bigger_than_one_binding(dev, synthetic_model):
    """token_embd and output of 151 MB (F32, 49152 x 768): more than lavapipe's 128 MiB storage
    binding, so the plan splits them by rows; lookups and logits span the parts."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan, gpu_options
    path = synthetic_model(n_layer=2, n_embd=768, n_ff=1024, n_head=12, n_head_kv=4, qtype="F32")
    m = store.acquire(path, vocab_only=True)
    try:
        plan = build_plan(m, gpu_options(dev))
        limit = dev.limits["max-storage-buffer-binding-size"]
        big = [t for t in plan.tensors if t["nbytes"] > limit]
        assert {t["name"] for t in big} == {"token_embd.weight", "output.weight"}
        assert all(len(t["parts"]) >= 2 and all(p["nbytes"] <= limit for p in t["parts"]) for t in big)
    finally:
        store.release(m)
    compare(path, PROMPTS[:2], 6, n_ctx=64)
