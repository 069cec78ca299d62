"""wasm threads in the native host (GitHub issue 6): realm-mt.wasm runs a model's
matmuls and attention on worker instances over one shared memory.

Splitting rows (and attention heads) across threads never changes how any one
value is summed, so the reference is exact: the single-thread module
realm.wasm. Logits after a 100-token prompt (all rows: prompt kernels, two
batches, attention split by (token, head)) and over 24 greedy decode steps
must be bit-identical for 1, 2 and 3 threads (3 > this machine's cores:
oversubscribed workers still finish), on files whose matrices cover Q4_1,
Q8_0, F16 and llama.cpp's K-quants. Also: the worker pool starts, resizes and
stops with the model (no thread left behind), and two models on threads of
their own run concurrently with the same results.

The relaxed-SIMD builds (realm-relaxed.wasm, realm-mt-relaxed.wasm: i8
activations through i16x8.relaxed_dot_i8x16_i7x16, the hosts' default where
the engine has relaxed SIMD) must give the same bits too: their integer sums
are the plain build's (weights below 2^7, no i16 saturation, see
core/quant_impl.h), so any difference is a bug.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from realm_web import wasm_host
from realm_web.core_model import CoreModel, Session
from realm_web.wasm_host import WasmCore

MT = wasm_host._WASM_DIR / "realm-mt.wasm"
ST = wasm_host._WASM_DIR / "realm.wasm"
ST_RELAXED = wasm_host._WASM_DIR / "realm-relaxed.wasm"
MT_RELAXED = wasm_host._WASM_DIR / "realm-mt-relaxed.wasm"

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (MT, ST, ST_RELAXED, MT_RELAXED)),
                                reason="run `python build.py` first")

PROMPT = [int(x) for x in np.random.default_rng(3).integers(200, 20000, 100)]
N_DECODE = 24


def run(path, module_path, threads: int):
    """(prompt logits for every row, decode logits per step, greedy ids) on one core."""
    core = WasmCore(path=module_path)
    model = CoreModel(path, core=core, threads=threads)
    assert model.threads == (threads if module_path in (MT, MT_RELAXED) else 1)
    s = Session(model, 160)
    try:
        s.eval(PROMPT, all_logits=True)
        prompt = np.array(s.logits(), dtype=np.float32, copy=True)
        tok, steps, ids = int(prompt[-1].argmax()), [], []
        for _ in range(N_DECODE):
            s.eval([tok])
            row = np.array(s.logits()[-1], dtype=np.float32, copy=True)
            steps.append(row)
            tok = int(row.argmax())
            ids.append(tok)
        return prompt, np.stack(steps), ids
    finally:
        s.close()
        model.close()
        core.close()


@pytest.fixture(scope="module", params=["default", "Q8_0", "F16", "K", "gemma3", "moe"])
def model_path(request, default_model_path, requantized, synthetic_model, llama_quantized):
    if request.param == "default":
        return default_model_path
    if request.param == "K":  # every matrix a K type (768-wide synthetic LLaMA, llama.cpp's quantizer)
        return llama_quantized(synthetic_model(n_layer=2), "Q4_K_M")
    small = dict(n_embd=256, n_ff=512, n_head=4, n_head_kv=2, qtype="Q8_0")
    if request.param == "gemma3":  # GeGLU (its f16 table) split over the threads
        return synthetic_model(arch="gemma3", n_layer=6, **small)
    if request.param == "moe":  # experts' and the shared expert's SwiGLU split over the threads
        return synthetic_model(arch="qwen2moe", n_layer=2, **small)
    return requantized(request.param)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_threads_compute_the_single_thread_bits(model_path):
    ref_prompt, ref_steps, ref_ids = run(model_path, ST, 1)
    assert np.isfinite(ref_prompt).all() and ref_prompt.std() > 0.1
    for module_path, threads in ((MT, 1), (MT, 2), (MT, 3), (ST_RELAXED, 1), (MT_RELAXED, 2)):
        prompt, steps, ids = run(model_path, module_path, threads)
        what = f"{module_path.name} on {threads} thread(s)"
        assert same_bits(prompt, ref_prompt), f"{what}: prompt logits differ from realm.wasm's"
        assert same_bits(steps, ref_steps), f"{what}: decode logits differ from realm.wasm's"
        assert ids == ref_ids


def validates_without_relaxed(path) -> bool:
    """Whether the module at path validates on the host's engine settings minus relaxed SIMD."""
    import wasmtime
    cfg = wasmtime.Config()
    cfg.wasm_memory64 = cfg.wasm_simd = cfg.wasm_bulk_memory = cfg.wasm_threads = cfg.shared_memory = True
    cfg.wasm_relaxed_simd = False
    try:
        wasmtime.Module.validate(wasmtime.Engine(cfg), path.read_bytes())
        return True
    except wasmtime.WasmtimeError:
        return False


def test_host_picks_relaxed_simd_when_the_engine_has_it(monkeypatch):
    """wasmtime (relaxed SIMD on in its config) loads the relaxed build; REALM_SIMD=simd128
    falls back to the plain one; an engine without relaxed SIMD refuses the probe module."""
    import wasmtime
    monkeypatch.delenv("REALM_SIMD", raising=False)
    assert wasm_host.relaxed_simd()
    assert wasm_host.default_wasm_path() in (MT_RELAXED, wasm_host.WASM_PATH)
    core = WasmCore()
    # core.simd must say what the loaded binary holds: an engine without relaxed SIMD
    # (otherwise configured as the host's) refuses exactly the relaxed builds
    assert core.simd == ("relaxed" if not validates_without_relaxed(core.path) else "simd128")
    core.close()
    assert not validates_without_relaxed(MT_RELAXED) and validates_without_relaxed(MT)
    monkeypatch.setenv("REALM_SIMD", "simd128")
    assert not wasm_host.relaxed_simd()
    if wasm_host.WASM_PATH is None:
        assert wasm_host.default_wasm_path() == MT
    cfg = wasmtime.Config()
    cfg.wasm_relaxed_simd = False
    with pytest.raises(wasmtime.WasmtimeError, match="relaxed"):
        wasmtime.Module.validate(wasmtime.Engine(cfg), wasm_host.RELAXED_PROBE)
    monkeypatch.setenv("REALM_SIMD", "avx512")
    with pytest.raises(Exception, match="REALM_SIMD"):
        wasm_host.relaxed_simd()


def realm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("realm-worker-")]


def test_pool_resizes_and_stops_with_the_model(default_model_path):
    before = len(realm_threads())
    model = CoreModel(default_model_path, threads=3)
    try:
        if not model.core.shared:
            pytest.skip("the host loaded realm.wasm (REALM_WASM?): no threads")
        assert model.threads == 3 and len(realm_threads()) == before + 2
        s = Session(model, 64)
        s.eval(PROMPT[:20])
        want = np.array(s.logits()[-1], dtype=np.float32, copy=True)
        for n in (1, 2, 4, 2):
            assert model.set_threads(n) == n
            assert len(realm_threads()) == before + n - 1
            s.truncate(0)
            s.eval(PROMPT[:20])
            assert same_bits(np.array(s.logits()[-1], dtype=np.float32), want), f"{n} threads"
        s.close()
    finally:
        model.close()
    assert len(realm_threads()) == before, "worker threads outlived their model"


def test_two_models_on_two_host_threads(default_model_path, requantized):
    """Each model has its own instance, memory and workers; driving both at once
    from two Python threads gives each one's serial answer."""
    paths = [default_model_path, requantized("Q8_0")]
    want = [run(p, MT, 2)[2] for p in paths]
    got, errors = [None, None], []

    def drive(i):
        try:
            got[i] = run(paths[i], MT, 2)[2]
        except Exception as e:  # surfaced below
            errors.append(e)
    ts = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    assert not errors, errors
    assert got == want


LONG_PROMPT = [int(x) for x in np.random.default_rng(5).integers(200, 20000, 600)]


def run_long(path, module_path, threads: int, n_decode: int = 4) -> np.ndarray:
    """Decode logits after a 600-token prompt: past batch.c's ATTN_SPLIT_MIN, where one row's
    attention on several threads is split by positions and dimensions instead of by heads."""
    core = WasmCore(path=module_path)
    model = CoreModel(path, core=core, threads=threads)
    s = Session(model, 640)
    try:
        s.eval(LONG_PROMPT)
        tok, steps = int(np.asarray(s.logits()[-1]).argmax()), []
        for _ in range(n_decode):
            s.eval([tok])
            row = np.array(s.logits()[-1], dtype=np.float32, copy=True)
            steps.append(row)
            tok = int(row.argmax())
        return np.stack(steps)
    finally:
        s.close()
        model.close()
        core.close()


def test_long_context_split_attention_keeps_the_bits(default_model_path):
    ref = run_long(default_model_path, ST, 1)
    assert np.isfinite(ref).all() and ref.std() > 0.1
    for module_path, threads in ((MT, 2), (MT, 3), (MT_RELAXED, 2)):
        got = run_long(default_model_path, module_path, threads)
        assert same_bits(got, ref), f"{module_path.name} on {threads} thread(s): decode logits at 600+ differ"
