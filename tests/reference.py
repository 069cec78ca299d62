"""llama.cpp (llama-cpp-python) as the outside reference for Realm's tests.

    llama_tokenize(path, text, add_special=True, parse_special=False) -> list[int]
    llama_detokenize(path, ids) -> bytes, llama_token_piece(path, id) -> bytes
    llama_greedy(path, prompt_ids, n_tokens, n_ctx=None) -> list[int]   # pure argmax
    llama_logits(path, ids, all_steps=False) -> np.ndarray              # float32
    llama_close(path)                                                   # free its cached models

Everything runs on 1 thread (deterministic, and leaves the other core to Realm),
prompts go in as token ids (no BOS is ever added behind your back: what you pass is
what is evaluated), and greedy decoding is an argmax over llama.cpp's logits, not
its sampler, so temperature/top-k/penalties cannot interfere. Ties go to the lowest
id (numpy argmax), as in llama.cpp's greedy sampler.

Llama objects are cached per (file, mode) and reloaded when the file on disk changes.
Weights are read into memory (use_mmap=False), so rewriting a cached model file
cannot fault a live reference.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_N_CTX = 512
_quiet = False
_cache: dict[tuple, object] = {}


def _llama_cpp():
    import llama_cpp  # noqa: PLC0415 (optional dependency)
    global _quiet
    if not _quiet:      # llama.cpp logs every load at INFO until told otherwise
        import llama_cpp._logger
        llama_cpp._logger.set_verbose(False)
        _quiet = True
    return llama_cpp


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _get(path, *, vocab_only: bool = False, logits_all: bool = False, n_ctx: int = DEFAULT_N_CTX):
    """A cached llama_cpp.Llama for `path`; recreated if the file changed or a bigger n_ctx is needed."""
    llama_cpp = _llama_cpp()
    path = Path(path).resolve()
    key = (str(path), vocab_only, logits_all)
    hit = _cache.get(key)
    if hit is not None:
        stamp, llm = hit
        if stamp == _stamp(path) and (vocab_only or llm.n_ctx() >= n_ctx):
            return llm
        _cache.pop(key)
        llm.close()
    if vocab_only:
        llm = _Vocab(path)
        _cache[key] = (_stamp(path), llm)
        return llm
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=max(n_ctx, 8),
        n_batch=512,
        n_ubatch=512,
        n_threads=1,
        n_threads_batch=1,
        n_gpu_layers=0,
        use_mmap=False,
        logits_all=logits_all,
        seed=0,
        verbose=False,
    )
    _cache[key] = (_stamp(path), llm)
    return llm


def close_all() -> None:
    """Free every cached llama.cpp model."""
    for _, llm in _cache.values():
        llm.close()
    _cache.clear()


def llama_close(path) -> None:
    """Free the cached llama.cpp models of one file (every mode), e.g. a big reference
    model a test no longer needs."""
    p = str(Path(path).resolve())
    for key in [k for k in _cache if k[0] == p]:
        _, llm = _cache.pop(key)
        llm.close()


# --------------------------------------------------------------------------- tokenizer

class _Vocab:
    """A vocab-only llama.cpp model (no weights, no context): tokenizer calls only."""

    def __init__(self, path: Path):
        llama_cpp = _llama_cpp()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        params.use_mmap = False
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ValueError(f"llama.cpp cannot load the vocabulary of {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def n_vocab(self) -> int:
        return self._n_vocab

    def tokenize(self, data: bytes, add_special: bool, parse_special: bool) -> list[int]:
        llama_cpp = _llama_cpp()
        n_max = len(data) + 16
        while True:
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            n_max = -n

    def piece(self, token: int, special: bool) -> bytes:
        llama_cpp = _llama_cpp()
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, int(token), buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def detokenize(self, ids: Sequence[int], remove_special: bool, unparse_special: bool) -> bytes:
        llama_cpp = _llama_cpp()
        toks = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
        size = 16 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(self.vocab, toks, len(ids), buf, size, remove_special, unparse_special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def close(self) -> None:
        if self.model:
            _llama_cpp().llama_model_free(self.model)
            self.model = None


def llama_tokenize(path, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]:
    """Token ids as llama.cpp makes them (llama_tokenize). add_special adds BOS/EOS only where
    the file asks for them (SmolLM2: add_bos_token=false, so nothing); parse_special turns
    text like "<|im_start|>" into its special token."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return _get(path, vocab_only=True).tokenize(data, add_special, parse_special)


def llama_token_piece(path, token: int, special: bool = True) -> bytes:
    """The bytes of one token (llama_token_to_piece; special=True renders control tokens)."""
    return _get(path, vocab_only=True).piece(token, special)


def llama_detokenize(path, ids: Sequence[int], remove_special: bool = False,
                     unparse_special: bool = False) -> bytes:
    """The bytes of `ids` as llama.cpp's llama_detokenize renders them."""
    return _get(path, vocab_only=True).detokenize([int(t) for t in ids], remove_special, unparse_special)


def llama_n_vocab(path) -> int:
    return _get(path, vocab_only=True).n_vocab()


# --------------------------------------------------------------------------- inference

def _check_ids(llm, ids: Sequence[int]) -> list[int]:
    ids = [int(t) for t in ids]
    if not ids:
        raise ValueError("need at least one token")
    n_vocab = llm.n_vocab()
    bad = [t for t in ids if not 0 <= t < n_vocab]
    if bad:
        raise ValueError(f"token ids out of range [0, {n_vocab}): {bad[:5]}")
    return ids


def _last_logits(llm) -> np.ndarray:
    llama_cpp = _llama_cpp()
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def llama_logits(path, ids: Sequence[int], all_steps: bool = False, n_ctx: int | None = None) -> np.ndarray:
    """Logits after feeding `ids` from an empty cache.

    all_steps=False: the logits for the next token after the last id, shape (n_vocab,).
    all_steps=True:  logits after every prefix, shape (len(ids), n_vocab)."""
    llm = _get(path, logits_all=all_steps, n_ctx=max(n_ctx or 0, len(ids) + 1, DEFAULT_N_CTX))
    ids = _check_ids(llm, ids)
    llm.reset()
    llm.eval(ids)
    if all_steps:
        return np.array(llm.scores[: len(ids)], dtype=np.float32, copy=True)
    return _last_logits(llm)


def _fresh(path, n_ctx: int, n_batch: int, **kw):
    """A new llama_cpp.Llama of its own (not cached): every row's logits kept, one thread."""
    return _llama_cpp().Llama(model_path=str(Path(path).resolve()), n_ctx=max(n_ctx, 8), n_batch=n_batch,
                              n_ubatch=n_batch, n_threads=1, n_threads_batch=1, n_gpu_layers=0, use_mmap=False,
                              logits_all=True, seed=0, verbose=False, **kw)


def _all_logits(llm, ids: Sequence[int]) -> np.ndarray:
    ids = _check_ids(llm, ids)
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32, copy=True)


def llama_logits_one_by_one(path, ids: Sequence[int], n_ctx: int | None = None) -> np.ndarray:
    """Logits after every prefix, the ids fed to llama.cpp one decode at a time (n_batch 1):
    its token-by-token path, against which llama_logits(all_steps=True) (its batch path)
    measures llama.cpp's own noise."""
    llm = _fresh(path, n_ctx or len(ids) + 8, 1)
    try:
        return _all_logits(llm, ids)
    finally:
        llm.close()


def llama_greedy(path, prompt_ids: Sequence[int], n_tokens: int, n_ctx: int | None = None,
                 stop_ids: Sequence[int] = ()) -> list[int]:
    """Greedy continuation: `n_tokens` new ids, each the argmax of llama.cpp's logits,
    fed back one at a time (the prompt itself in one batch). Stops early after
    producing any id in `stop_ids` (that id is included)."""
    need = len(prompt_ids) + n_tokens + 1
    llm = _get(path, n_ctx=max(n_ctx or 0, need, DEFAULT_N_CTX))
    ids = _check_ids(llm, prompt_ids)
    if need > llm.n_ctx():
        raise ValueError(f"prompt + n_tokens = {need} > n_ctx {llm.n_ctx()}")
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    stops = set(int(s) for s in stop_ids)
    for i in range(n_tokens):
        tok = int(np.argmax(_last_logits(llm)))
        out.append(tok)
        if tok in stops or i == n_tokens - 1:
            break
        llm.eval([tok])
    return out


def llama_grammar_allowed(llama_cpp, smpl, n_vocab: int) -> list[int]:
    """The token ids llama.cpp's grammar sampler `smpl` (llama_sampler_init_grammar) allows now, ascending."""
    arr = (llama_cpp.llama_token_data * n_vocab)()
    for i in range(n_vocab):
        arr[i].id, arr[i].logit, arr[i].p = i, 0.0, 0.0
    cur = llama_cpp.llama_token_data_array(data=arr, size=n_vocab, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(smpl, ctypes.byref(cur))
    logits = np.frombuffer(arr, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
    return sorted(int(t) for t in logits["id"][np.isfinite(logits["logit"])])


def llama_kv_logits(path, ids: Sequence[int], type_k: int, type_v: int, n_batch: int = 512) -> np.ndarray:
    """Logits after every prefix of `ids` with llama.cpp's KV cache of ggml types type_k and
    type_v (its -ctk / -ctv; 8 = Q8_0) and flash attention, which llama.cpp needs for a
    quantized V. A fresh context each call."""
    llm = _fresh(path, len(ids) + 8, n_batch, type_k=type_k, type_v=type_v, flash_attn=True)
    try:
        return _all_logits(llm, ids)
    finally:
        llm.close()


def llama_lora_logits(path, ids: Sequence[int], adapters: Sequence[tuple], n_batch: int = 512) -> np.ndarray:
    """Logits after every prefix of `ids` with LoRA adapters [(adapter path, scale), ...] set
    through llama.cpp's adapter API (llama_adapter_lora_init, llama_set_adapters_lora; the
    same path Llama(lora_path=, lora_scale=) takes, for several adapters). n_batch 1: its
    token-by-token path. A fresh model each call (adapters belong to one model)."""
    llama_cpp = _llama_cpp()
    llm = _fresh(path, len(ids) + 8, n_batch)
    handles = []
    try:
        for ap, _ in adapters:
            h = llama_cpp.llama_adapter_lora_init(llm._model.model, str(Path(ap).resolve()).encode())
            if not h:
                raise ValueError(f"llama.cpp refuses the LoRA adapter {ap}")
            handles.append(h)
        arr = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
        scales = (ctypes.c_float * len(handles))(*[float(sc) for _, sc in adapters])
        if llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, arr, len(handles), scales):
            raise ValueError("llama_set_adapters_lora failed")
        return _all_logits(llm, ids)
    finally:
        llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
        for h in handles:
            llama_cpp.llama_adapter_lora_free(h)
        llm.close()


def llama_cpp_available() -> bool:
    try:
        _llama_cpp()
        return True
    except Exception:  # ImportError, or a broken shared library (OSError)
        return False


__all__ = ["llama_lora_logits", "llama_tokenize", "llama_token_piece", "llama_detokenize", "llama_n_vocab", "llama_logits", "llama_greedy",
           "llama_close", "llama_cpp_available", "close_all", "llama_grammar_allowed"]
