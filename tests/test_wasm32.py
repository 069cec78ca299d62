"""The wasm32 builds (realm32*.wasm): the same core with 32-bit pointers, for
engines without Memory64. Same tokens and logits as Memory64, bit for bit; the
host picks the width by feature detection or REALM_WASM; sizes past 4 GiB are
refused, not truncated."""
from __future__ import annotations

import numpy as np
import pytest

from realm_web import wasm_host
from realm_web.core_model import CoreModel, Session
from realm_web.errors import RealmError
from realm_web.wasm_host import WasmCore

WASM = wasm_host._WASM_DIR
PAIRS = [("realm.wasm", "realm32.wasm"), ("realm-mt-relaxed.wasm", "realm32-mt-relaxed.wasm")]


def _run(path, model, ids, n_gen=8, threads=1):
    """Teacher-forced logits of ids (one batched eval), greedy continuation, and a
    two-session batch step (session handles are pointer-sized in memory)."""
    core = WasmCore(path=WASM / path)
    m = CoreModel(model, core=core, threads=threads)
    try:
        s = Session(m, 128)
        s.eval(ids, all_logits=True)
        logits = np.array(s.logits(), dtype=np.float32).copy()
        toks, tok = [], int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1]))
        for _ in range(n_gen):
            toks.append(tok)
            s.eval([tok])
            tok = int(np.argmax(np.asarray(s.logits()).reshape(-1, logits.shape[-1])[-1]))
        a, b = Session(m, 64), Session(m, 64)
        m.eval_batch([a, b], [ids[:3], ids[:5]])
        batch = [np.array(x.logits(), dtype=np.float32).copy() for x in (a, b)]
        return core.width, logits, toks, batch
    finally:
        m.close()


def _same_bits(x, y):
    return x.shape == y.shape and np.array_equal(x.view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize("b64,b32", PAIRS)
def test_default_model_is_bit_identical(default_model_path, b64, b32):
    ids = CoreModel(default_model_path, vocab_only=True).tokenize("The capital of France is")
    w64, l64, t64, bt64 = _run(b64, default_model_path, ids, threads=2 if "mt" in b64 else 1)
    w32, l32, t32, bt32 = _run(b32, default_model_path, ids, threads=2 if "mt" in b32 else 1)
    assert (w64, w32) == ("wasm64", "wasm32")
    assert _same_bits(l64, l32) and t64 == t32
    assert all(_same_bits(x, y) for x, y in zip(bt64, bt32))


def test_kquant_model_is_bit_identical(synthetic_model, llama_quantized):
    src = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2)
    q = llama_quantized(src, "Q4_K_M")
    ids = [int(t) for t in np.random.default_rng(3).integers(100, 30000, 24)]
    w64, l64, t64, bt64 = _run("realm.wasm", q, ids)
    w32, l32, t32, bt32 = _run("realm32.wasm", q, ids)
    assert _same_bits(l64, l32) and t64 == t32
    assert all(_same_bits(x, y) for x, y in zip(bt64, bt32))


def test_width_is_chosen_by_feature_detection_or_forced(monkeypatch):
    monkeypatch.delenv("REALM_WASM", raising=False)
    assert wasm_host.memory64()  # wasmtime has Memory64: the main build
    assert wasm_host.pointer_width() == "wasm64"
    assert wasm_host.default_wasm_path().name.startswith("realm-") or wasm_host.default_wasm_path().name == "realm.wasm"
    monkeypatch.setenv("REALM_WASM", "wasm32")
    assert wasm_host.pointer_width() == "wasm32"
    assert wasm_host.default_wasm_path().name.startswith("realm32")
    assert WasmCore().width == "wasm32"


def test_wasm32_refuses_sizes_past_4_gib():
    c = WasmCore(path=WASM / "realm32.wasm")
    assert c.call("realm_alloc", (4 << 30) + 64) == 0  # not a truncated 64-byte block
    assert "out of memory" in c.last_error()
    p = c.alloc(2 << 30)  # 2 GiB: the next block lies past the signed i32 boundary
    q = c.alloc(1 << 30)
    assert q > (1 << 31)  # an address over 2 GiB comes back unsigned
    c.write(q, b"ok")
    assert c.read_bytes(q, 2) == b"ok"
    c.free(q), c.free(p)
    with pytest.raises(RealmError):
        c.alloc(5 << 30)


def _sparse_big_gguf(path, nbytes: int = 4_700_000_000):
    """A GGUF header whose one tensor claims nbytes of F32 data; the file is sparse (the data
    is a hole), so it costs no disk: the refusal must come before any of it is read."""
    import gguf
    n_embd = 4096
    n_vocab = nbytes // (4 * n_embd)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(n_embd)
    w.add_tensor_info("token_embd.weight", (n_vocab, n_embd), np.dtype(np.float32), n_vocab * n_embd * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "r+b") as f:
        f.seek(0, 2)
        f.truncate(f.tell() + n_vocab * n_embd * 4 + 64)
    return path


def test_model_over_4_gib_refused_by_name_before_its_weights_are_copied(tmp_path, default_model_path):
    from realm_web.errors import OutOfMemoryError
    big = _sparse_big_gguf(tmp_path / "big.gguf")
    core = WasmCore(path=WASM / "realm32.wasm")
    try:
        with pytest.raises(OutOfMemoryError) as e:
            CoreModel(str(big), core=core)
        msg = str(e.value)   # the size, the limit and the fix
        assert "weights need" in msg and "4 GiB" in msg and "Memory64" in msg and "smaller quant" in msg, msg
        assert core.memory_bytes() < 1 << 30      # nothing was copied
        m = CoreModel(str(default_model_path), core=core)   # the same instance loads the next model
        try:
            assert m.tokenize("Paris", add_special=False)
        finally:
            m.close()
    finally:
        core.close()


def test_two_lora_adapters_are_bit_identical(synthetic_model):
    """Adapter handles go to the core as an array of pointer-sized entries (4 bytes in wasm32):
    two adapters with their own scales give the Memory64 build's logits bit for bit."""
    import refmodels
    from realm_web import lora
    src = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192)
    ads = [refmodels.lora_adapter(src, rank=8, qtype="F32", seed=1), refmodels.lora_adapter(src, rank=16, qtype="F16", seed=2)]
    ids = [int(t) for t in np.random.default_rng(5).integers(100, 8000, 16)]
    out = {}
    for path in ("realm.wasm", "realm32.wasm"):
        core = WasmCore(path=WASM / path)
        m = CoreModel(str(src), core=core)
        held = [(lora.acquire(m, p), sc) for p, sc in zip(ads, (1.0, 0.5))]
        try:
            s = Session(m, 64)
            s.set_lora(held)
            s.eval(ids, all_logits=True)
            out[core.width] = np.array(s.logits(), dtype=np.float32).copy()
            s.set_lora(held[1:])
            s.eval(ids[:1])
            out[core.width + " second only"] = np.array(s.logits(), dtype=np.float32).copy()
            s.close()
        finally:
            for a, _ in held:
                lora.release(a)
            m.close()
            core.close()
    assert _same_bits(out["wasm64"], out["wasm32"])
    assert _same_bits(out["wasm64 second only"], out["wasm32 second only"])
