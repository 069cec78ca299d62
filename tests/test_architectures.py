"""Architectures beyond llama (issue 16): tiny seeded random models written with gguf-py under
each architecture's own metadata and tensor names (as llama.cpp's converter writes them),
teacher-forced against llama.cpp through llama-cpp-python.

qwen3: per-head RMSNorm of q and k before RoPE (attn_q_norm / attn_k_norm), NEOX RoPE, and a
head dimension that need not be n_embd / n_head (attention.key_length). gemma3 and gemma2
(soft-capping, sliding window on every other layer), phi3 (fused attn_qkv and gate/up, partial
rotary, LongRoPE short/long factors, rope.scaling.attn_factor), llama with rope_freqs.weight
(Llama 3.1/3.2); every new arch batched == alone."""
from __future__ import annotations

import numpy as np
import pytest

from forward_helpers import kl_rows as _kl
from realm_web.core_model import CoreModel, Session
from realm_web.errors import RealmError

N_STEPS = 96


def _teacher(n_vocab: int) -> list[int]:
    rng = np.random.default_rng(16)
    return [int(t) for t in rng.integers(100, n_vocab - 1, N_STEPS)]


def _realm_logits(path, ids) -> np.ndarray:
    m = CoreModel(str(path))
    try:
        s = Session(m, len(ids) + 8)
        s.eval(ids, all_logits=True)
        out = np.array(s.logits(), dtype=np.float64, copy=True)
        s.close()
        return out
    finally:
        m.close()


QWEN3 = [
    dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192),               # head_dim 64
    dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192, head_dim=128),  # q wider than x
]


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
@pytest.mark.parametrize("shape", QWEN3, ids=["hd64", "hd128"])
def test_qwen3_matches_llama_cpp(synthetic_model, llama_ref, shape, qtype):
    path = synthetic_model(arch="qwen3", qtype=qtype, **shape)
    ids = _teacher(shape["n_vocab"])
    ref = llama_ref.llama_logits(path, ids, all_steps=True).astype(np.float64)
    llama_ref.llama_close(path)
    mine = _realm_logits(path, ids)
    assert mine.shape == ref.shape
    assert ref.std(axis=1).min() > 0.5                      # the model says something
    kl = _kl(ref, mine)
    top1 = (mine.argmax(1) == ref.argmax(1)).mean()
    if qtype == "F32":                                     # only summation order differs
        assert np.abs(mine - ref).max() < 0.02 and top1 == 1.0
    else:   # Q8_0 weights and activations on both sides: KL tiny; top-1 flips only at near-ties
        srt = np.sort(ref, axis=1)
        clear = srt[:, -1] - srt[:, -2] > 0.05
        assert kl.mean() < 1e-3 and (mine.argmax(1) == ref.argmax(1))[clear].all(), (kl.mean(), top1)
        assert top1 >= 0.9


def test_qwen3_norms_matter_and_are_required(synthetic_model, tmp_path):
    """Without its q/k norms a qwen3 file is refused by name (not run as qwen2)."""
    import refmodels
    path = synthetic_model(arch="qwen3", **QWEN3[0])
    kvs = refmodels.read_kv(path)
    r = refmodels.reader(path)
    import gguf
    out = tmp_path / "no-norms.gguf"
    w = gguf.GGUFWriter(str(out), "qwen3")
    w.kv_data[0].clear()
    for k, kv in kvs.items():
        w.add_key_value(k, refmodels.kv_value(kv), kv.vtype, sub_type=kv.sub_type) if kv.sub_type is not None \
            else w.add_key_value(k, refmodels.kv_value(kv), kv.vtype)
    for t in r.tensors:
        if "attn_k_norm" in t.name:
            continue
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed([int(x) for x in t.shape])),
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(RealmError, match="attn_k_norm.weight' is missing"):
        CoreModel(str(out))


@pytest.mark.parametrize("shape", QWEN3, ids=["hd64", "hd128"])
def test_qwen3_on_the_gpu_equals_the_cpu(synthetic_model, shape):
    """The WGSL plan's per-head norm op (rmsnorm.wgsl HEADS, in place): GPU logits as the
    CPU core's, teacher-forced (test_gpu_model's rule: within MAX_LOGIT_DIFF, argmax equal
    unless a near-tie)."""
    from gpu_helpers import gpu_device
    gpu_device()                                   # (fails loudly when no adapter: see gpu_helpers)
    from test_gpu_model import MAX_LOGIT_DIFF, compare
    worst, steps = compare(synthetic_model(arch="qwen3", qtype="Q8_0", **shape), ["Hello there, friend"], 8,
                           n_ctx=64)
    assert steps == 8 and worst <= MAX_LOGIT_DIFF


# ------------------------------------------------------------------ gemma3
GEMMA3 = dict(n_layer=6, n_embd=256, n_ff=512, n_head=4, n_head_kv=1, n_vocab=8192, head_dim=64, tied=True,
              sliding_window=16)


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_gemma3_matches_llama_cpp_past_the_window(synthetic_model, llama_ref, qtype):
    """sqrt(n_embd) embeddings, per-head q/k norms, post-norms, GeGLU, and five sliding-window
    layers (window 16, base 10000) to one global one: 96 teacher-forced tokens, six windows."""
    path = synthetic_model(arch="gemma3", qtype=qtype, **GEMMA3)
    ids = _teacher(GEMMA3["n_vocab"])
    ref = llama_ref.llama_logits(path, ids, all_steps=True).astype(np.float64)
    llama_ref.llama_close(path)
    mine = _realm_logits(path, ids)
    assert ref.std(axis=1).min() > 0.5
    kl = _kl(ref, mine)
    top1 = (mine.argmax(1) == ref.argmax(1)).mean()
    if qtype == "F32":
        assert np.abs(mine - ref).max() < 0.05 and top1 == 1.0, (np.abs(mine - ref).max(), top1)
    else:
        srt = np.sort(ref, axis=1)
        clear = srt[:, -1] - srt[:, -2] > 0.05
        assert kl.mean() < 1e-3 and (mine.argmax(1) == ref.argmax(1))[clear].all(), (kl.mean(), top1)


def test_gemma3_window_changes_the_logits(synthetic_model):
    """The window is real: the same file with a window wider than the text gives other logits
    past position 16 and the same ones before."""
    import refmodels
    narrow = synthetic_model(arch="gemma3", **GEMMA3)
    wide = synthetic_model(arch="gemma3", **dict(GEMMA3, sliding_window=4096))
    ids = _teacher(GEMMA3["n_vocab"])[:40]
    a, b = _realm_logits(narrow, ids), _realm_logits(wide, ids)
    assert np.array_equal(a[:16], b[:16]) and np.abs(a[16:] - b[16:]).max() > 1e-3
    assert refmodels.tensor_types(narrow)["blk.5.post_ffw_norm.weight"] == "F32"


def _compare(ref, mine, qtype, f32_max=0.02):
    """test_qwen3's rule: F32 within f32_max and every argmax equal; a quant's KL tiny and the
    argmax equal wherever the reference's top-2 gap is clear."""
    assert mine.shape == ref.shape
    assert ref.std(axis=1).min() > 0.5                      # the model says something
    kl = _kl(ref, mine)
    top1 = (mine.argmax(1) == ref.argmax(1)).mean()
    if qtype == "F32":
        assert np.abs(mine - ref).max() < f32_max and top1 == 1.0, (np.abs(mine - ref).max(), top1)
    else:
        srt = np.sort(ref, axis=1)
        clear = srt[:, -1] - srt[:, -2] > 0.05
        assert kl.mean() < 1e-3 and (mine.argmax(1) == ref.argmax(1))[clear].all(), (kl.mean(), top1)
        assert top1 >= 0.9


def _vs_llama_cpp(llama_ref, path, n_vocab):
    ids = _teacher(n_vocab)
    ref = llama_ref.llama_logits(path, ids, all_steps=True).astype(np.float64)
    llama_ref.llama_close(path)
    return ref, _realm_logits(path, ids)


@pytest.mark.parametrize("arch", ["gemma3", "gemma2", "phi3", "qwen3moe", "qwen2moe"])
def test_every_arch_has_a_gpu_plan(synthetic_model, arch):
    """The GPU plan runs every architecture of the core (tests/test_gpu_architectures.py:
    the same bits as here); what it cannot run (more than 64 experts per token) is refused
    by name."""
    from realm_web import store
    from realm_web.gpu.plan import build_plan
    from test_gpu_model import _words
    shape = {"gemma3": GEMMA3, "gemma2": GEMMA2, "phi3": PHI3, "qwen3moe": MOE, "qwen2moe": MOE}[arch]
    m = store.acquire(synthetic_model(arch=arch, **shape), vocab_only=True)
    try:
        assert build_plan(m, _words()).programs["body"]
    finally:
        store.release(m)
    if arch == "qwen3moe":
        wide = synthetic_model(arch=arch, **dict(MOE, n_layer=1, n_embd=64, n_ff=64, n_head=2, n_head_kv=1,
                                                   n_expert=66, n_expert_used=65))
        m = store.acquire(wide, vocab_only=True)
        try:
            with pytest.raises(RealmError, match="qwen3moe with more than 64 experts per token runs on the CPU core only"):
                build_plan(m, _words())
        finally:
            store.release(m)


# ------------------------------------------------------------------ gemma2
# four layers: 0 and 2 slide (window 16), 1 and 3 are global; caps low enough to bite
GEMMA2 = dict(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192, head_dim=64,
              sliding_window=16, softcaps=(20.0, 10.0))


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_gemma2_matches_llama_cpp_past_the_window(synthetic_model, llama_ref, qtype):
    """sqrt(n_embd) embeddings, GeGLU, pre/post norms, q scaled by 1/sqrt(head_dim), attention
    and final logit soft-capping, sliding window on every other layer: 96 tokens, six windows."""
    path = synthetic_model(arch="gemma2", qtype=qtype, **GEMMA2)
    _compare(*_vs_llama_cpp(llama_ref, path, GEMMA2["n_vocab"]), qtype)


def test_gemma2_soft_caps_and_window_are_real(synthetic_model):
    """llama.cpp's defaults (50 / 30) when the file says nothing; a final cap of 3 bounds every
    logit by 3; the window changes logits only past it."""
    ids = _teacher(GEMMA2["n_vocab"])[:40]
    unset = _realm_logits(synthetic_model(arch="gemma2", **dict(GEMMA2, softcaps=None)), ids)
    default = _realm_logits(synthetic_model(arch="gemma2", **dict(GEMMA2, softcaps=(50.0, 30.0))), ids)
    tight = _realm_logits(synthetic_model(arch="gemma2", **dict(GEMMA2, softcaps=(50.0, 3.0))), ids)
    assert np.array_equal(unset, default)
    assert np.abs(tight).max() <= 3.0 and np.abs(default).max() > 3.5
    wide = _realm_logits(synthetic_model(arch="gemma2", **dict(GEMMA2, sliding_window=4096)), ids)
    narrow = _realm_logits(synthetic_model(arch="gemma2", **GEMMA2), ids)
    assert np.array_equal(wide[:16], narrow[:16]) and np.abs(wide[16:] - narrow[16:]).max() > 1e-3


# ------------------------------------------------------------------ phi3
# fused attn_qkv and ffn_up (gate, up), rotary on 32 of 64 dimensions, LongRoPE factors and
# attn_factor as Phi-3.5/4-mini's converter writes them
PHI3 = dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=4, n_vocab=8192, rope_dim=32,
            rope_factors=True, attn_factor=1.19)


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
@pytest.mark.parametrize("orig", [None, 64], ids=["short", "long"])
def test_phi3_matches_llama_cpp(synthetic_model, llama_ref, qtype, orig):
    """short: contexts within rope.scaling.original_context_length (4096 here) use
    rope_factors_short; long: an original context of 64, below both engines' contexts (Realm's
    104, llama.cpp's 512), so rope_factors_long (llama.cpp's get_rope_factors)."""
    path = synthetic_model(arch="phi3", qtype=qtype, n_ctx_orig=orig, **PHI3)
    _compare(*_vs_llama_cpp(llama_ref, path, PHI3["n_vocab"]), qtype)


def test_phi3_long_and_short_factors_differ_per_session(synthetic_model):
    """One file, original context 64: a session of 64 tokens uses the short factors, one of 65
    the long ones; each gives the same logits in a batch with the other as alone."""
    path = synthetic_model(arch="phi3", qtype="Q8_0", n_ctx_orig=64, **PHI3)
    ids = _teacher(PHI3["n_vocab"])[:24]
    m = CoreModel(str(path))
    try:
        short, long_ = Session(m, 64), Session(m, 65)
        alone = []
        for s in (short, long_):
            s.eval(ids, all_logits=True)
            alone.append(np.array(s.logits(), copy=True))
        assert np.abs(alone[0][4:] - alone[1][4:]).max() > 1e-2     # other angles past the first tokens
        for s in (short, long_):
            s.truncate(0)
        m.eval_batch([short, long_], [ids[:16], ids[:16]])
        m.eval_batch([short, long_], [ids[16:17], ids[16:17]])
        for s, ref in zip((short, long_), alone):
            assert np.array_equal(np.asarray(s.logits()[-1]), ref[16])
        short.close(), long_.close()
    finally:
        m.close()


# ------------------------------------------------------------------ llama + rope_freqs
LLAMA_ROPEF = dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192, rope_factors=True)


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_llama_rope_freqs_match_llama_cpp(synthetic_model, llama_ref, qtype):
    """Llama 3.1/3.2's rope_freqs.weight: each pair's angle divided by its factor (ggml_rope_ext)."""
    path = synthetic_model(arch="llama", qtype=qtype, **LLAMA_ROPEF)
    _compare(*_vs_llama_cpp(llama_ref, path, LLAMA_ROPEF["n_vocab"]), qtype)


# ------------------------------------------------------------------ mixture of experts
# 8 experts of 256, 2 per token; qwen2moe adds a 512-wide shared expert and q/k/v biases
MOE = dict(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=8192, n_expert=8, n_expert_used=2)


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
@pytest.mark.parametrize("arch", ["qwen3moe", "qwen2moe"])
def test_moe_matches_llama_cpp(synthetic_model, llama_ref, arch, qtype):
    """Router softmax, top-2 of 8 experts (qwen3moe: weights renormalised over the two),
    experts from one 3-D tensor per kind; qwen2moe's shared expert times sigmoid(its gate)."""
    path = synthetic_model(arch=arch, qtype=qtype, **MOE)
    _compare(*_vs_llama_cpp(llama_ref, path, MOE["n_vocab"]), qtype)


def test_moe_k_quant_experts_match_llama_cpp(synthetic_model, llama_quantized, llama_ref):
    """Experts quantized by llama.cpp itself (Q4_K_M: Q4_K / Q6_K expert tensors)."""
    import refmodels
    path = llama_quantized(synthetic_model(arch="qwen3moe", **MOE), "Q4_K_M")
    types = refmodels.tensor_types(path)
    assert types["blk.0.ffn_gate_exps.weight"] in ("Q4_K", "Q5_K", "Q6_K"), types
    _compare(*_vs_llama_cpp(llama_ref, path, MOE["n_vocab"]), "Q4_K_M")


def test_moe_routing_uses_every_expert_and_refuses_bad_counts(synthetic_model, tmp_path):
    """Each expert is chosen somewhere (zeroing one expert's down matrix changes some logits but
    not all); an expert_used_count above expert_count is refused by name."""
    import gguf
    import refmodels
    path = synthetic_model(arch="qwen3moe", **MOE)
    ids = _teacher(MOE["n_vocab"])[:48]
    base = _realm_logits(path, ids)
    r = refmodels.reader(path)

    def rewrite(out, kv_edit=None, tensor_edit=None):
        kvs = refmodels.read_kv(path)
        if kv_edit:
            kv_edit(kvs)
        w = gguf.GGUFWriter(str(out), "qwen3moe")
        w.kv_data[0].clear()
        for k, kv in kvs.items():
            w.kv_data[0][k] = gguf.GGUFValue(value=kv.value, type=kv.vtype, sub_type=kv.sub_type)
        for t in r.tensors:
            data = np.array(t.data)
            if tensor_edit:
                data = tensor_edit(t.name, data)
            w.add_tensor(t.name, data, raw_shape=list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return out

    def zero_expert(name, data, e=3):
        if name == "blk.1.ffn_down_exps.weight":
            data = data.copy()
            data[e] = 0
        return data
    changed = _realm_logits(rewrite(tmp_path / "zero.gguf", tensor_edit=zero_expert), ids)
    rows = np.abs(changed - base).max(axis=1) > 1e-4
    assert 0 < rows.sum() < len(ids), rows.sum()           # expert 3 is used by some tokens, not all

    def too_many(kvs):
        kvs["qwen3moe.expert_used_count"] = refmodels.KV(gguf.GGUFValueType.UINT32, None, 9)
    with pytest.raises(RealmError, match="expert_used_count"):
        CoreModel(str(rewrite(tmp_path / "bad.gguf", kv_edit=too_many)))


def test_experts_in_other_archs_are_refused_by_name(synthetic_model, tmp_path):
    """A llama file with expert tensors (Mixtral style) is refused, naming what runs experts."""
    import gguf
    import refmodels
    src = synthetic_model(arch="qwen3moe", **MOE)
    kvs = refmodels.read_kv(src)
    out = tmp_path / "llama-experts.gguf"
    w = gguf.GGUFWriter(str(out), "llama")
    w.kv_data[0].clear()
    for k, kv in kvs.items():
        k = k.replace("qwen3moe.", "llama.")
        value = b"llama" if k == "general.architecture" else kv.value
        w.kv_data[0][k] = gguf.GGUFValue(value=value, type=kv.vtype, sub_type=kv.sub_type)
    for t in refmodels.reader(src).tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed([int(x) for x in t.shape])),
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(RealmError, match="experts in qwen2moe and qwen3moe"):
        CoreModel(str(out))


# ------------------------------------------------------------------ batched
@pytest.mark.parametrize("arch, shape", [("gemma2", GEMMA2), ("gemma3", GEMMA3), ("phi3", dict(PHI3, n_ctx_orig=64)),
                                         ("llama", LLAMA_ROPEF), ("qwen3moe", MOE), ("qwen2moe", MOE)],
                         ids=["gemma2", "gemma3", "phi3", "llama-ropef", "qwen3moe", "qwen2moe"])
def test_new_archs_batched_equal_alone(synthetic_model, arch, shape):
    """test_batch's streams (1..5 sessions a step, prefill chunks beside decode tokens, past
    the sliding windows) give each session the bits it gets alone."""
    from test_batch import N_GEN, PROMPTS, alone, batched, same_bits
    model = CoreModel(str(synthetic_model(arch=arch, qtype="Q8_0", **shape)), threads=1)
    try:
        ref = [alone(model, p, g) for p, g in zip(PROMPTS, N_GEN)]
        rows, ids, sizes = batched(model)
    finally:
        model.close()
    assert sizes == {1, 2, 3, 4, 5}
    for i, (ref_rows, ref_ids) in enumerate(ref):
        assert ids[i] == ref_ids and len(rows[i]) == len(ref_rows)
        assert all(same_bits(a, b) for a, b in zip(rows[i], ref_rows)), f"{arch}: stream {i}"


@pytest.mark.parametrize("arch, shape", [("gemma2", GEMMA2), ("gemma3", GEMMA3), ("phi3", dict(PHI3, n_ctx_orig=64)),
                                         ("llama", LLAMA_ROPEF)], ids=["gemma2", "gemma3", "phi3", "llama-ropef"])
def test_prompt_in_one_eval_equals_token_by_token(synthetic_model, arch, shape):
    """Attention takes a prompt's consecutive tokens in pairs (quant_attn_pair_f16: each cache row
    read once for both): every row's logits are the bits of one-token evals, with one (phi3), two
    (gemma2, llama) and four (gemma3) query heads per KV head, on two threads, and past the sliding
    windows (16 positions), where two consecutive tokens see different rows and go one by one."""
    from test_batch import same_bits
    ids = [int(x) for x in np.random.default_rng(5).integers(10, 8000, 41)]
    model = CoreModel(str(synthetic_model(arch=arch, qtype="Q8_0", **shape)), threads=2)
    s = Session(model, 64)
    try:
        s.eval(ids, all_logits=True)
        together = np.array(s.logits(), copy=True)
        s.truncate(0)
        one = []
        for t in ids:
            s.eval([t])
            one.append(np.array(s.logits()[-1], copy=True))
        for i, row in enumerate(one):
            assert same_bits(together[i], row), f"{arch}: prompt row {i} differs from its one-token eval"
    finally:
        s.close()
        model.close()
