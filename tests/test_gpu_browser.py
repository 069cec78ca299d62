"""The same WGSL kernels in a browser: Debian's headless Chromium (Playwright, never
`playwright install`) with --enable-unsafe-webgpu, whose adapter is SwiftShader.

host/gpu-test.html loads the kernels from /wgsl/ through the JS SDK's preprocessor and
runs jobs Python sends it; the results are compared with the CPU core (bit for bit, as
natively). The whole model runs through the JS SDK's WebGPU backend on the plan of the
realm.wasm instantiated in the page, and its greedy tokens are compared with the CPU's
(the rule of tests/test_gpu_model.py). Everything is served from 127.0.0.1: no CDN.
"""
from __future__ import annotations

import base64
import tempfile

import numpy as np
import pytest

from gpu_browser_helpers import CHROMIUM, CHROMIUM_ARGS, Site, chromium_missing
from gpu_helpers import TYPES, act_words, core, cpu_matmul, quantize_ref, random_weights

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]


def _enc(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).view(np.uint8).tobytes()).decode()


def _dec(s: str, dtype, n: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype)[:n]


@pytest.fixture(scope="module")
def browser(default_model_path, model_cache_dir):
    why = chromium_missing()
    if why:
        from conftest import missing
        missing(why)
    from playwright.sync_api import sync_playwright
    import refmodels
    site = Site({"/models/": default_model_path.parent, "/cache/": refmodels.models_dir(), "/synth/": model_cache_dir})
    with sync_playwright() as p, tempfile.TemporaryDirectory() as td:
        ctx = p.chromium.launch_persistent_context(td, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                                   ignore_default_args=["--headless"])
        try:
            page = ctx.new_page()
            page.set_default_timeout(600_000)
            page.goto(site.url + "/host/gpu-test.html")
            try:
                info = page.evaluate("window.gpuTest.ready")
            except Exception as e:
                from conftest import missing
                missing(f"Chromium has no WebGPU adapter here: {e}")
            yield page, info, site
        finally:
            ctx.close()
            site.close()


def test_adapter(browser):
    page, info, _ = browser
    assert info["limits"]["maxStorageBufferBindingSize"] >= 128 << 20
    assert "packed_4x8_integer_dot_product" in info["wgslLanguageFeatures"]
    print(info["describe"], info["features"])


@pytest.mark.parametrize("name", list(TYPES))
def test_matmul_every_type(browser, name):
    """quantize.wgsl + matmul.wgsl (matrix-vector, matrix-matrix, and the subgroup variant
    where the adapter has subgroups): the CPU core's results bit for bit."""
    page, info, _ = browser
    c = core()
    rng = np.random.default_rng(20)
    tid, _, _, kind = TYPES[name]
    K, rows, T = 512, 72, 3
    W = random_weights(name, rows, K, rng)
    x = rng.standard_normal((T, K), dtype=np.float32)
    want = cpu_matmul(c, tid, W, x)
    xs = act_words(kind, K) if kind else K
    units = -(-K // 32) if kind <= 2 else (K // 32 if kind < 5 else K // 256)
    pre = [{"file": "quantize.wgsl", "constants": {"KIND": kind, "WG": 64}, "params": [K, K, xs, 0],
            "step": [T, 0, 0, 0], "bind": [1, 2], "grid": [-(-units // 64), 1, T]}] if kind else []
    configs = [(1, 1, []), (1, 8, []), (16, 1, [])]
    if "subgroups" in info["features"]:
        configs.append((4, 1, ["SUBGROUPS"]))
    for tpr, tt, defines in configs:
        d = {"file": "matmul.wgsl", "constants": {"QT": tid, "WG": 64, "TPR": tpr, "TT": tt}, "defines": defines,
             "params": [K, rows, W.shape[1], xs, rows, 0, 0, 0], "step": [T, 0, 0, 0],
             "bind": [0, 2 if kind else 1, 3], "grid": [-(-rows * tpr // 64), 1, -(-T // tt)]}
        job = {"buffers": [{"data": _enc(W)}, {"data": _enc(x)}, {"size": 4 * xs * T}, {"size": 4 * rows * T}],
               "dispatches": pre + [d], "read": [2, 3]}
        out = page.evaluate("job => window.gpuTest.run(job)", job)
        if kind:
            acts = _dec(out["outputs"][0], np.uint32, xs * T).reshape(T, xs)
            for t in range(T):
                assert np.array_equal(acts[t], quantize_ref(kind, x[t]))
        y = _dec(out["outputs"][1], np.float32, rows * T).reshape(T, rows)
        assert np.array_equal(y, want), f"TPR={tpr} TT={tt} {defines}: max diff {np.abs(y - want).max()}"


def test_layer_kernels(browser):
    """rmsnorm, swiglu, rope_kv + attention, argmax in the browser equal the native adapter's
    results (which equal the CPU's: tests/test_gpu_kernels.py)."""
    from gpu_helpers import gpu_device, run
    from realm_web.gpu import buffers as B
    page, info, _ = browser
    dev = gpu_device()
    rng = np.random.default_rng(21)
    E, T = 576, 2
    x = rng.standard_normal((T, E), dtype=np.float32)
    w = rng.standard_normal(E, dtype=np.float32)
    g = (rng.standard_normal((T, 300)) * 5).astype(np.float32)
    u = rng.standard_normal((T, 300), dtype=np.float32)
    H, Hkv, D, n_ctx = 4, 2, 64, 8
    KVD = Hkv * D
    rope = rng.standard_normal((n_ctx, D // 2, 2), dtype=np.float32)
    kv0 = rng.standard_normal((n_ctx, KVD)).astype(np.float16)
    k = rng.standard_normal((T, KVD), dtype=np.float32)
    v = rng.standard_normal((T, KVD), dtype=np.float32)
    q = rng.standard_normal((T, H * D), dtype=np.float32)
    L = rng.standard_normal((1, 5000), dtype=np.float32)
    eps = int(np.float32(1e-5).view(np.uint32))
    scale = int(np.float32(0.125).view(np.uint32))
    bufs = [x, w, np.zeros((T, E), np.float32), g, u, k, v, kv0, kv0.copy(), rope, q, np.zeros((T, H * D), np.float32),
            L, np.zeros(4, np.uint32)]
    disp = [
        ("rmsnorm.wgsl", {"WG": 64}, [E, eps, E, E], [T, 0, 0, 0], [0, 1, 2], [1, 1, T]),
        ("swiglu.wgsl", {"WG": 64}, [300, 300, 0, 0], [T, 0, 0, 0], [3, 4], [5, 1, T]),
        ("rope_kv.wgsl", {"WG": 64}, [KVD, D, D, 0, KVD, 0, 0, 0], [T, 3, 0, 0], [5, 6, 7, 8, 9], [1, 1, T]),
        ("attention.wgsl", {"WG": 64}, [H, H // Hkv, D, D, 0, H * D, H * D, KVD // 2, scale, 0, 0, 0, 0, 0, 0, 0], [T, 3, 0, 0],
         [10, 7, 8, 9, 11], [H, 1, T]),
        ("argmax.wgsl", {"WG": 256}, [5000, 0, 0, 0], [1, 0, 0, 0], [12, 13], [1, 1, 1]),
    ]
    job = {"buffers": [{"data": _enc(b)} for b in bufs],
           "dispatches": [{"file": f, "constants": c, "params": p, "step": s, "bind": bi, "grid": gr}
                          for f, c, p, s, bi, gr in disp],
           "read": [2, 3, 7, 8, 11, 13]}
    out = page.evaluate("job => window.gpuTest.run(job)", job)
    # the same dispatches natively
    nb = [B.storage(dev, b.nbytes, data=b) for b in bufs]
    for f, c, p, s, bi, gr in disp:
        run(dev, f, [nb[i] for i in bi], gr, params=p, step=s, constants=c)
    for slot, i in enumerate(job["read"]):
        a = bufs[i]
        native = B.read(dev, nb[i], np.uint8, a.nbytes)
        browser_ = np.frombuffer(base64.b64decode(out["outputs"][slot]), np.uint8)[:a.nbytes]
        assert np.array_equal(native, browser_), f"buffer {i} ({disp})"


def test_default_model_greedy_in_chromium(browser, default_model_path):
    """The whole forward pass in the page: realm.wasm's plan, the JS SDK's WebGPU backend,
    the same WGSL; greedy tokens equal the CPU core's."""
    from realm_web import store
    from realm_web.core_model import Session
    page, info, site = browser
    m = store.acquire(default_model_path)
    try:
        ids = m.tokenize("The capital of France is")
        n = 8
        c = Session(m, 128)
        c.eval(ids)
        cpu, margins = [], []
        for _ in range(n):
            lc = c.logits()[-1]
            top2 = np.sort(lc)[-2:]
            margins.append(float(top2[1] - top2[0]))
            cpu.append(int(lc.argmax()))
            c.eval([cpu[-1]])
        c.close()
    finally:
        store.release(m)
    r = page.evaluate("o => window.gpuTest.generate(o)",
                      {"url": f"{site.url}/models/{default_model_path.name}", "promptIds": ids, "nGen": n, "nCtx": 128})
    assert r["device"] == "webgpu", r["note"]
    got = r["tokens"]
    print(f"{len(got)} tokens in {r['seconds']:.1f} s on {info['describe']}")
    for i, (a, b) in enumerate(zip(got, cpu)):
        if a != b:
            assert margins[i] < 0.5, f"token {i}: {a} != {b} at margin {margins[i]}"
            break
    else:
        assert len(got) == n


def test_lora_in_chromium(browser, synthetic_model):
    """LoRA adapters through the JS SDK's WebGPU backend (Realm.load(url, {lora})): the core's
    LoRA plan run by webgpu.js on SwiftShader gives the CPU core's logits bit for bit (two
    adapters with their own scales: F16 on attention/FFN, Q8_0 with the output head; prompt
    and decode)."""
    import refmodels
    from realm_web import lora, store
    from realm_web.core_model import Session
    page, info, site = browser
    syn = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
    ad1 = refmodels.lora_adapter(syn, rank=16, qtype="F16", tensors=("attn_q", "attn_output", "ffn_up"), seed=2)
    ad2 = refmodels.lora_adapter(syn, rank=32, qtype="Q8_0", tensors=("ffn_down", "output.weight"), seed=3)
    pairs = [(ad1, 0.7), (ad2, -1.1)]
    ids = [int(t) for t in np.random.default_rng(4).integers(100, 8000, 12)]
    steps = [17, 4242]
    m = store.acquire(syn)
    held = [(lora.acquire(m, p), sc) for p, sc in pairs]
    s = Session(m, 64)
    try:
        s.set_lora(held)
        s.eval(ids, all_logits=True)
        rows = [s.logits()]
        for t in steps:
            s.eval([t])
            rows.append(s.logits()[-1:])
        want = np.concatenate(rows)
        s.set_lora([])
        s.eval(ids, all_logits=True)
        base = s.logits()
    finally:
        s.close()
        for a, _ in held:
            lora.release(a)
        store.release(m)
    r = page.evaluate("o => window.gpuTest.loraLogits(o)",
                      {"url": f"{site.url}/cache/{syn.name}", "promptIds": ids, "steps": steps,
                       "lora": [[f"{site.url}/cache/{p.name}", sc] for p, sc in pairs]})
    assert r["device"] == "webgpu", r["note"]
    got = _dec(r["logits"], np.float32, r["n"]).reshape(-1, 8192)
    assert not np.array_equal(got[:len(ids)], base)                  # the adapters ran
    assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()}"


@pytest.mark.parametrize("arch", ["gemma3", "gemma2", "phi3", "qwen3moe", "qwen2moe"])
def test_new_archs_greedy_in_chromium(browser, synthetic_model, arch):
    """gemma3 / gemma2 / phi3 (synthetic, past gemma's window of 16; phi3 with its long
    factors) and the MoE archs (experts routed on the GPU) through the JS SDK's WebGPU
    backend, which knows no architecture: greedy tokens equal the CPU core's (SwiftShader
    gives the CPU's bits, as lavapipe)."""
    from realm_web import store
    from realm_web.core_model import SamplerSettings, Session
    from test_architectures import GEMMA2, GEMMA3, MOE, PHI3
    shape = {"gemma3": GEMMA3, "gemma2": GEMMA2, "phi3": dict(PHI3, n_ctx_orig=32), "qwen3moe": MOE, "qwen2moe": MOE}[arch]
    path = synthetic_model(arch=arch, qtype="Q8_0", **shape)
    page, info, site = browser
    n, n_ctx = 20, 64
    m = store.acquire(path)
    try:
        ids = m.tokenize("Hello there, my good friend")
        c = Session(m, n_ctx)
        c.set_sampler(SamplerSettings(temperature=0))
        c.eval(ids)
        cpu = [c.sample()]
        for _ in range(n - 1):
            cpu.append(c.step(cpu[-1]))
        c.close()
    finally:
        store.release(m)
    rel = path.relative_to(refmodels_dir())
    r = page.evaluate("o => window.gpuTest.generate(o)",
                      {"url": f"{site.url}/synth/{rel.as_posix()}", "promptIds": ids, "nGen": n, "nCtx": n_ctx})
    assert r["device"] == "webgpu", r["note"]
    assert len(ids) + n > 16 and r["tokens"] == cpu


def refmodels_dir():
    import refmodels
    return refmodels.models_dir()


def test_grammar_and_logprobs_in_chromium(browser, default_model_path):
    """A GBNF grammar and logprobs on the JS SDK's WebGPU backend (the core's standalone
    sampler on the logits row read back, as the wgpu-py host): the text follows the grammar
    and equals the CPU core's, and so do the logprobs (the same logits bits on SwiftShader)."""
    from realm_web import Realm
    page, info, site = browser
    grammar = 'root ::= "The answer is " ("yes" | "no" | "maybe") "." [ a-z]{0,12}'
    messages = [{"role": "user", "content": "Is the sky blue?"}]
    r = Realm.load(default_model_path, n_ctx=256)
    try:
        want = r.chat(messages, max_tokens=10, temperature=0, grammar=grammar, logprobs=2)
        want_lp = r.last_stats.logprobs
    finally:
        r.close()
    got = page.evaluate("o => window.gpuTest.constrained(o)",
                        {"url": f"{site.url}/models/{default_model_path.name}", "messages": messages,
                         "grammar": grammar, "maxTokens": 10, "topLogprobs": 2})
    assert got["device"] == "webgpu", got["note"]
    assert got["text"] == want and want.startswith("The answer is "), (got["text"], want)
    assert len(got["logprobs"]) == len(want_lp)
    clamp = lambda x: max(x, -9999.0)   # noqa: E731  (OpenAI's shape: a masked token's -inf is -9999)
    for (_, lp, tops), (_, wlp, wtops) in zip(got["logprobs"], want_lp):
        assert abs(lp - clamp(wlp)) < 1e-5, (lp, wlp)
        assert np.allclose(tops, [clamp(t[1]) for t in wtops], atol=1e-5), (tops, wtops)
