"""A model inside realm.wasm, as the Python host sees it.

`CoreModel` owns one wasmtime instance of realm.wasm and one model in it: the
GGUF header and the tensor data copied once into the instance's memory. Every
`Session` of that model lives in the same instance (its own KV cache, token
history, sampler), so N sessions cost one copy of the weights plus N caches.
Share CoreModels through `realm_web.store`, not by constructing them.
"""
from __future__ import annotations

import array
import math
import os
import struct
from dataclasses import dataclass

from . import abi
from .errors import RealmError, core_error
from .limits import EVAL_BATCH
from .abi import MAX_LOGPROBS
from .sampling import SamplerSettings  # noqa: F401  (its home was here; callers still import it from here)
from .sources import as_source

# Only the core interface is used here (call, alloc, free, write, read_bytes,
# read_i32, write_i32, read_f32_rows, last_error, lock), never numpy or
# wasmtime directly, so this module also runs inside Pyodide with a JS-backed core.

# GGUF value types (gguf.md) -> struct format of one scalar / array typecode
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_ARRAY = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 10: "Q", 11: "q", 12: "d"}
GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 7, 8, 9

FIRST_READ = 1 << 20  # header bytes offered first; the core asks for more if needed


def pack_handles(c, handles) -> bytes:
    """An array of core handles as the core reads it: pointer-sized entries, 8 bytes in the
    Memory64 builds, 4 in the wasm32 ones (the core's ptr_format)."""
    return struct.pack(f"<{len(handles)}{getattr(c, 'ptr_format', 'Q')}", *handles)


def _native_core():
    from .wasm_host import WasmCore
    return WasmCore()


def default_threads() -> int:
    """REALM_THREADS, else the CPUs this process may run on (at most 8)."""
    env = os.environ.get("REALM_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_core_factory = _native_core


def set_core_factory(factory) -> None:
    """Make every new CoreModel get its core from `factory()` (the Pyodide host
    installs a JS-backed one; the default is a wasmtime instance)."""
    global _core_factory
    _core_factory = factory


@dataclass(frozen=True)
class ModelInfo:
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    bos: int
    eos: int
    add_bos: bool
    add_eos: bool
    rope_type: int
    rope_dim: int
    rope_base: float
    rms_eps: float


def read_model_info(c, handle: int) -> ModelInfo:
    """realm_model_info's ModelInfo struct (core/abi.json)."""
    size = abi.STRUCTS["ModelInfo"]["size"]
    buf = c.alloc(size)
    try:
        c.check(c.call("realm_model_info", handle, buf), "realm_model_info")
        d = abi.unpack("ModelInfo", c.read_bytes(buf, size))
    finally:
        c.free(buf)
    d["add_bos"], d["add_eos"] = bool(d["add_bos"]), bool(d["add_eos"])
    return ModelInfo(**d)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type: int
    shape: tuple[int, ...]  # ggml order: shape[0] is the innermost (row) dimension
    offset: int             # from the start of the tensor data section
    nbytes: int


class CoreModel:
    """One GGUF model loaded into its own realm.wasm instance."""

    def __init__(self, source, vocab_only: bool = False, header_only: bool = False, core=None,
                 threads: int | None = None) -> None:
        """source: a path or a source object (realm_web.sources). vocab_only: tokenizer
        without weights; header_only: parse metadata and tensor table only. threads:
        how many threads run this model's matmuls and attention (default_threads();
        only where the core has wasm threads: realm-mt.wasm under wasmtime)."""
        self.source = as_source(source)
        self.path = self.source.name
        self.vocab_only = vocab_only or header_only
        self.header_only = header_only
        self.info: ModelInfo | None = None
        self._own_core = core is None
        self.core = core if core is not None else _core_factory()
        self.handle = 0
        self._meta: dict | None = None
        try:
            self._open(self.source.size)
            if not self.vocab_only:
                self.set_threads(default_threads() if threads is None else threads)
        except BaseException:
            self.close()
            raise

    def _open(self, size: int) -> None:
        c = self.core
        n = min(size, FIRST_READ)
        while True:
            buf = c.alloc(n)
            c.write(buf, self.source.read(0, n))
            h = c.call("realm_model_open", buf, n, size)
            if h:
                self.handle = h
                break
            need = c.call("realm_model_need")
            if not need or need <= n:
                err = core_error(c, self.path)
                c.free(buf)
                raise err
            c.free(buf)
            n = min(need, size)
        if self.header_only:
            return
        if not self.vocab_only:
            off = c.call("realm_model_data_offset", self.handle)
            nbytes = c.call("realm_model_data_size", self.handle)
            dst = c.call("realm_model_weights", self.handle)
            if nbytes and not dst:
                raise core_error(c, self.path)
            self.source.copy_to_core(c, dst, off, nbytes)  # the one copy of the weights
        if not c.call("realm_model_load", self.handle, int(self.vocab_only)):
            raise core_error(c, self.path)
        self.info = read_model_info(c, self.handle)

    def close(self) -> None:
        for g in list(getattr(self, "_grammars", {}).values()):
            g.close()
        from . import lora
        lora.close_all(self)  # the core frees them with the model
        if self.handle:
            with self.core.lock:
                self.core.call("realm_model_free", self.handle)
                if getattr(self, "_bbuf", 0):
                    self.core.free(self._bbuf)
                    self._bbuf = self._bcap = 0
            self.handle = 0
        if self._own_core and hasattr(self.core, "close"):
            self.core.close()  # its worker threads

    @property
    def threads(self) -> int:
        return getattr(self.core, "threads", 1)

    @property
    def simd(self) -> str:
        """The kernels' instruction set: "relaxed" (relaxed SIMD) or "simd128"."""
        return getattr(self.core, "simd", "simd128")

    def set_threads(self, n: int) -> int:
        """Run on n threads from now on (every session of this model); returns the
        count in effect (1 where the core has no threads)."""
        return self.core.set_threads(n) if hasattr(self.core, "set_threads") else 1

    # -------------------------------------------------------------- metadata
    def _decode_value(self, typ: int, ptr: int, n: int):
        c = self.core
        if typ == GGUF_STRING:
            ln = struct.unpack("<Q", c.read_bytes(ptr, 8))[0]
            return c.read_bytes(ptr + 8, ln).decode("utf-8", "replace")
        return struct.unpack(_SCALAR[typ], c.read_bytes(ptr, struct.calcsize(_SCALAR[typ])))[0]

    def meta_entries(self) -> list[tuple[str, int, int, object]]:
        """(key, GGUF type, array element type, value) for every metadata entry, in file order."""
        c = self.core
        out = []
        size = abi.STRUCTS["MetaEntry"]["size"]
        with c.lock:
            buf = c.alloc(size)
            try:
                for i in range(c.call("realm_model_meta_count", self.handle)):
                    c.check(c.call("realm_model_meta_entry", self.handle, i, buf), "realm_model_meta_entry")
                    e = abi.unpack("MetaEntry", c.read_bytes(buf, size))
                    key = c.read_bytes(e["key_ptr"], e["key_len"]).decode("utf-8", "replace")
                    typ, atyp, alen, vp, vl = e["type"], e["arr_type"], e["arr_len"], e["val_ptr"], e["val_len"]
                    if typ != GGUF_ARRAY:
                        val = self._decode_value(typ, vp, vl)
                    elif atyp == GGUF_STRING:
                        raw = c.read_bytes(vp, vl)
                        val, p = [], 0
                        for _ in range(alen):
                            ln = struct.unpack_from("<Q", raw, p)[0]
                            val.append(raw[p + 8:p + 8 + ln].decode("utf-8", "replace"))
                            p += 8 + ln
                    elif atyp == GGUF_BOOL:
                        val = [b != 0 for b in c.read_bytes(vp, vl)]
                    else:
                        val = array.array(_ARRAY[atyp], c.read_bytes(vp, vl)).tolist()
                    out.append((key, typ, atyp if typ == GGUF_ARRAY else 0, val))
            finally:
                c.free(buf)
        return out

    def metadata(self) -> dict:
        """Every GGUF metadata key -> value (arrays as lists), as the core parsed it."""
        if self._meta is None:
            self._meta = {k: v for k, _, _, v in self.meta_entries()}
        return self._meta

    def tensors(self) -> list[TensorEntry]:
        c = self.core
        res = []
        size = abi.STRUCTS["TensorEntry"]["size"]
        with c.lock:
            buf = c.alloc(size)
            try:
                for i in range(c.call("realm_model_tensor_count", self.handle)):
                    c.check(c.call("realm_model_tensor_entry", self.handle, i, buf), "realm_model_tensor_entry")
                    e = abi.unpack("TensorEntry", c.read_bytes(buf, size))
                    name = c.read_bytes(e["name_ptr"], e["name_len"]).decode("utf-8", "replace")
                    shape = (e["ne0"], e["ne1"], e["ne2"], e["ne3"])[:e["n_dims"]]
                    res.append(TensorEntry(name, e["type"], shape, e["offset"], e["nbytes"]))
            finally:
                c.free(buf)
        return res

    def data_offset(self) -> int:
        return self.core.call("realm_model_data_offset", self.handle)

    # ---------------------------------------------------------------- tokens
    def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        c = self.core
        with c.lock:
            tp = c.alloc(len(data) + 1)
            try:
                c.write(tp, data)
                cap = len(data) + 8
                while True:
                    op = c.alloc(cap * 4)
                    try:
                        n = c.call("realm_tokenize", self.handle, tp, len(data), int(add_special), int(parse_special), op, cap)
                        if n < 0:
                            raise core_error(c, "tokenize failed")
                        if n <= cap:
                            return c.read_i32(op, n)
                        cap = n
                    finally:
                        c.free(op)
            finally:
                c.free(tp)

    def piece(self, token: int, special: bool = True) -> bytes:
        c = self.core
        with c.lock:
            cap = 64
            while True:
                op = c.alloc(cap)
                try:
                    n = c.call("realm_token_piece", self.handle, int(token), int(special), op, cap)
                    if n < 0:
                        raise RealmError(f"token id {token} is out of range (vocabulary of {self.info.n_vocab})")
                    if n <= cap:
                        return c.read_bytes(op, n)
                    cap = n
                finally:
                    c.free(op)

    def detokenize(self, ids, special: bool = False) -> bytes:
        return b"".join(self.piece(i, special) for i in ids)

    def is_eog(self, token: int) -> bool:
        with self.core.lock:
            return bool(self.core.call("realm_token_is_eog", self.handle, int(token)))

    # -------------------------------------------------------------- grammars
    GRAMMAR_CACHE = 8  # compiled grammars kept per model (a session given the same one again keeps its caches)

    def grammar(self, text: str | bytes, root: str = "root") -> "Grammar":
        """The compiled GBNF grammar (llama.cpp's syntax) for text; the last few are kept, so
        repeated generations with one grammar reuse its handle. Raises RealmError naming the
        line, column and problem for a bad grammar."""
        cache = self.__dict__.setdefault("_grammars", {})
        key = (text if isinstance(text, str) else bytes(text), root)
        g = cache.pop(key, None)
        if g is None or g.closed:
            g = Grammar(self, text, root)
        cache[key] = g  # most recent last
        while len(cache) > self.GRAMMAR_CACHE:
            cache.pop(next(iter(cache))).close()
        return g

    def json_schema_gbnf(self, schema, prefix: str = "") -> str:
        """GBNF for a JSON Schema (a dict, or its JSON text), converted by the core
        (realm_json_schema_gbnf; llama.cpp's json-schema-to-grammar semantics). Rule names
        start with prefix, the start rule is prefix + "root". Raises RealmError naming the
        schema path and the problem."""
        import json
        data = schema if isinstance(schema, (bytes, bytearray)) else \
            (schema if isinstance(schema, str) else json.dumps(schema)).encode("utf-8")
        pb = prefix.encode("utf-8") + b"\0"
        c = self.core
        with c.lock:
            p = c.alloc(len(data) + len(pb) + 8)
            try:
                c.write(p, bytes(data) + pb)
                lp = p + len(data) + len(pb)
                out = c.call("realm_json_schema_gbnf", p, len(data), p + len(data), lp)
                if not out:
                    raise core_error(c)
                n = struct.unpack("<Q", c.read_bytes(lp, 8))[0]
                text = c.read_bytes(out, n).decode("utf-8")
                c.free(out)
            finally:
                c.free(p)
        return text

    # --------------------------------------------------------------- batches
    BATCH_ALL_LOGITS, BATCH_NO_LOGITS = 1, 2  # realm_batch_eval's flags (core/batch.h)

    def batch_max_tokens(self) -> int:
        """Tokens one batched step may hold, all sessions together."""
        with self.core.lock:
            return self.core.call("realm_batch_max_tokens")

    def _batch(self, name: str, sessions, chunks, flags) -> list[int] | None:
        """One realm_batch_eval / realm_batch_step call over this model's sessions."""
        sessions = list(sessions)
        chunks = [[int(t) for t in ch] for ch in chunks]
        n = len(sessions)
        if len(chunks) != n or len(flags) != n:
            raise ValueError(f"{n} sessions need {n} chunks and flags (got {len(chunks)}, {len(flags)})")
        ids = [t for ch in chunks for t in ch]
        handles = pack_handles(self.core, [s.handle if s is not None else 0 for s in sessions])
        head = handles + struct.pack(f"<{n}I{n}I", *(len(ch) for ch in chunks), *flags)
        need = len(head) + 4 * n + 4 * len(ids) + 8
        c = self.core
        with c.lock:
            if need > getattr(self, "_bcap", 0):
                if getattr(self, "_bbuf", 0):
                    c.free(self._bbuf)
                self._bcap = max(need, 4096)
                self._bbuf = c.alloc(self._bcap)
            p = self._bbuf
            w = len(handles) // max(n, 1)  # a handle's bytes: 8 (wasm64) or 4 (wasm32)
            pc, pf = p + w * n, p + (w + 4) * n
            po, pi = p + (w + 8) * n, p + (w + 12) * n
            c.write(p, head)
            if ids:
                c.write_i32(pi, ids)
            args = (self.handle, p, n, pi, pc, pf) + ((po,) if name == "realm_batch_step" else ())
            if not c.call(name, *args):
                which = c.call("realm_batch_failed")
                err = core_error(c)
                err.session_index = which if which >= 0 else None
                raise err
            return c.read_i32(po, n) if name == "realm_batch_step" else None

    def eval_batch(self, sessions, chunks, all_logits=False, logits=True) -> None:
        """One forward pass for several sessions of this model: session i evaluates
        chunks[i] (a prompt chunk, or one decode token) after its own history. Every
        weight matrix is read once for all of them; each session's logits (its last
        row, every row with all_logits, none with logits=False; either may be a bool
        or one bool per session) are bit for bit what Session.eval would give alone.
        At most batch_max_tokens() ids in all. On error (ContextOverflowError,
        RealmError; `.session_index` names the session, or None) no session changed."""
        n = len(sessions)
        al = [all_logits] * n if isinstance(all_logits, bool) else list(all_logits)
        lg = [logits] * n if isinstance(logits, bool) else list(logits)
        flags = [(self.BATCH_ALL_LOGITS if a else 0) if w else self.BATCH_NO_LOGITS for a, w in zip(al, lg)]
        if _gpu_batch(sessions):  # GPU sessions of this model: the GPU backend's batch (realm_web/gpu/batch.py)
            from .gpu.batch import run_batch
            run_batch(sessions, chunks, flags, core_model=self)
            return
        self._batch("realm_batch_eval", sessions, chunks, flags)

    def step_batch(self, sessions, tokens, sample=True) -> list[int]:
        """One decode step of several sessions in one call into the core: session i
        evaluates tokens[i] (an id, or a list of ids: a prompt chunk), then samples its
        next token with its own sampler. sample: a bool, or one per session; a session
        that does not sample (a prompt chunk that is not the prompt's last) computes no
        logits and gets -1. Returns the next ids. Errors as eval_batch."""
        chunks = [list(t) if isinstance(t, (list, tuple)) else [int(t)] for t in tokens]
        want = [sample] * len(chunks) if isinstance(sample, bool) else list(sample)
        if len(want) != len(chunks):
            raise ValueError(f"{len(chunks)} sessions need {len(chunks)} sample flags (got {len(want)})")
        flags = [0 if w else self.BATCH_NO_LOGITS for w in want]
        if _gpu_batch(sessions):
            from .gpu.batch import run_batch
            if all(want):
                return run_batch(sessions, chunks, flags, sample=True, core_model=self)
            run_batch(sessions, chunks, flags, core_model=self)   # (its step samples only with every row's logits)
            return [s.sample() if w else -1 for s, w in zip(sessions, want)]
        return self._batch("realm_batch_step", sessions, chunks, flags)


def _gpu_batch(sessions) -> bool:
    """A batch whose first session is a GPU session (realm_web/gpu/session.py) goes to the GPU backend."""
    sessions = list(sessions) if not isinstance(sessions, list) else sessions
    return bool(sessions) and getattr(sessions[0], "gmodel", None) is not None


class Grammar:
    """A GBNF grammar compiled inside a CoreModel's instance (realm_grammar_new). Sessions
    copy it when it is set, so closing it never affects a session."""

    def __init__(self, model: CoreModel, text: str | bytes, root: str = "root") -> None:
        self.model = model
        self.text = text
        self.root = root
        self.handle = 0
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        rb = root.encode("utf-8") + b"\0"
        c = self.core = model.core
        with c.lock:
            p = c.alloc(len(data) + len(rb) + 1)
            try:
                c.write(p, data + b"\0" + rb)
                self.handle = c.call("realm_grammar_new", model.handle, p, len(data), p + len(data) + 1)
                if not self.handle:
                    raise core_error(c)
            finally:
                c.free(p)

    @property
    def closed(self) -> bool:
        return not self.handle

    def close(self) -> None:
        if self.handle:
            with self.core.lock:
                self.core.call("realm_grammar_free", self.handle)
            self.handle = 0

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# KV cache types (llama.cpp's --cache-type-k / --cache-type-v names) -> ggml type ids
KV_CACHE_TYPES = {"f16": 1, "q8_0": 8}


def kv_cache_type(name) -> int:
    """A KV cache type by name ('f16', 'q8_0') or ggml id (1, 8); anything else is refused by name."""
    if isinstance(name, str) and name.lower() in KV_CACHE_TYPES:
        return KV_CACHE_TYPES[name.lower()]
    if isinstance(name, int) and not isinstance(name, bool) and name in KV_CACHE_TYPES.values():
        return name
    raise RealmError(f"KV cache type {name!r}: use one of {', '.join(KV_CACHE_TYPES)}")


class Session:
    """A KV cache and sampler inside a CoreModel's instance.

    cache_type_k / cache_type_v: 'f16' (default) or 'q8_0' (llama.cpp's -ctk / -ctv q8_0: 53 %
    of the f16 cache's memory). Every method but close() refuses a closed session (the core
    would get handle 0)."""

    def __init__(self, model: CoreModel, n_ctx: int, cache_type_k="f16", cache_type_v="f16") -> None:
        if model.vocab_only:
            raise RealmError("a vocab-only model cannot run sessions")
        self.model = model
        self.handle = 0
        type_k, type_v = kv_cache_type(cache_type_k), kv_cache_type(cache_type_v)
        c = self.core = model.core
        with c.lock:
            self.handle = c.call("realm_session_new_kv", model.handle, int(n_ctx), type_k, type_v)
            if not self.handle:
                raise core_error(c, "could not create a session")
            self.n_ctx = n_ctx
            self.cache_types = (type_k, type_v)
            self._ids = c.alloc(4 * EVAL_BATCH)
            self._ids_cap = EVAL_BATCH
            self._sp = c.alloc(abi.STRUCTS["SamplerParams"]["size"])
            self._acc = 0        # embed_begin's n_embd f32 sums, allocated on first use
            self._acc_n = 0      # tokens summed into it

    def kv_bytes(self) -> int:
        """Bytes of this session's K and V caches together."""
        with self.core.lock:
            return self.core.call("realm_session_kv_bytes", self._h())

    def close(self) -> None:
        if self.handle:
            with self.core.lock:
                self.core.call("realm_session_free", self.handle)
                self.core.free(self._ids)
                self.core.free(self._sp)
                self.core.free(self._acc)
            self.handle = 0

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return not self.handle

    def _h(self) -> int:
        """The live handle (call with the lock held)."""
        if not self.handle:
            raise RealmError("session is closed")
        return self.handle

    @property
    def n_past(self) -> int:
        with self.core.lock:
            return self.core.call("realm_session_n_past", self._h())

    def tokens(self) -> list[int]:
        with self.core.lock:
            h = self._h()
            n = self.core.call("realm_session_n_past", h)
            p = self.core.call("realm_session_tokens", h)
            return self.core.read_i32(p, n)

    def truncate(self, n: int) -> None:
        with self.core.lock:
            self.core.call("realm_session_truncate", self._h(), int(n))

    def _put_ids(self, ids: list[int]) -> int:
        """ids into the session's id buffer (grown as needed); returns its address. Lock held."""
        c = self.core
        if len(ids) > self._ids_cap:
            c.free(self._ids)
            self._ids_cap = max(len(ids), 2 * self._ids_cap)
            self._ids = c.alloc(4 * self._ids_cap)
        c.write_i32(self._ids, ids)
        return self._ids

    def eval(self, ids, all_logits: bool = False) -> None:
        ids = list(ids)
        c = self.core
        with c.lock:
            h = self._h()
            if not c.call("realm_session_eval", h, self._put_ids(ids), len(ids), int(all_logits)):
                raise core_error(c)

    def logits(self):
        """A copy of the last eval's logits, rows x n_vocab (a numpy array on native hosts)."""
        c = self.core
        with c.lock:
            h = self._h()
            rows = c.call("realm_session_logits_rows", h)
            p = c.call("realm_session_logits", h)
            return c.read_f32_rows(p, rows, self.model.info.n_vocab)

    def set_sampler(self, s: SamplerSettings) -> None:
        with self.core.lock:
            h = self._h()
            self.core.write(self._sp, s.pack())
            self.core.call("realm_session_set_sampler", h, self._sp)

    def sample(self) -> int:
        with self.core.lock:
            t = self.core.call("realm_session_sample", self._h())
            if t < 0:
                raise core_error(self.core)
            return t

    def step(self, token: int) -> int:
        """Evaluate one token and sample the next, in one call into the core."""
        with self.core.lock:
            t = self.core.call("realm_session_step", self._h(), int(token))
            if t < 0:
                raise core_error(self.core)
            return t

    # ------------------------------------------------------------------ LoRA
    def set_lora(self, adapters) -> bool:
        """Apply [(LoraAdapter, scale), ...] (realm_web.lora; [] removes them) from the next
        eval (realm_session_set_lora). A change of adapters or scales empties the cache, whose
        keys and values the old ones computed (returns True then).  The caller keeps the
        adapters alive (realm_web.lora.acquire / retain) while the session uses them."""
        from .lora import check_adapters
        pairs = check_adapters(adapters, self.model)
        key = [(a.handle, sc) for a, sc in pairs]
        c = self.core
        with c.lock:
            h = self._h()
            p = c.alloc(12 * max(len(pairs), 1))
            try:
                handles = pack_handles(c, [a.handle for a, _ in pairs])
                c.write(p, handles + b"".join(struct.pack("<f", sc) for _, sc in pairs))
                if not c.call("realm_session_set_lora", h, p, p + len(handles), len(pairs)):
                    raise core_error(c)
            finally:
                c.free(p)
            changed = key != getattr(self, "_lora_key", [])
            if changed:
                c.call("realm_session_truncate", h, 0)
        self._lora = pairs
        self._lora_key = key
        return changed

    @property
    def lora(self) -> list:
        """[(LoraAdapter, scale), ...] this session applies."""
        return [(a, sc) for a, sc in getattr(self, "_lora", []) if not a.closed]

    # -------------------------------------------------------------- grammar
    GRAMMAR_STATES = {0: None, 1: "running", 2: "complete", 3: "dead"}

    def set_grammar(self, grammar: "str | bytes | Grammar | None", root: str = "root") -> None:
        """Constrain every later sample to a GBNF grammar (text, or a model.grammar() handle),
        from its start; None removes it (realm_session_set_grammar). Setting the same grammar
        again rewinds it and keeps its caches."""
        g = None
        if grammar is not None:
            g = grammar if isinstance(grammar, Grammar) else self.model.grammar(grammar, root)
            if g.model is not self.model:
                raise RealmError("the grammar was compiled for another model")
        with self.core.lock:
            if not self.core.call("realm_session_set_grammar", self._h(), g.handle if g is not None else 0):
                raise core_error(self.core)

    def grammar_allowed(self) -> list[int]:
        """The token ids the grammar allows next, ascending (realm_session_grammar_mask)."""
        words = (self.model.info.n_vocab + 31) // 32
        c = self.core
        with c.lock:
            h = self._h()
            p = c.alloc(4 * words)
            try:
                n = c.call("realm_session_grammar_mask", h, p, words)
                if n < 0:
                    raise core_error(c)
                raw = int.from_bytes(c.read_bytes(p, 4 * words), "little")
            finally:
                c.free(p)
        out = [t for t in range(self.model.info.n_vocab) if raw >> t & 1]
        assert len(out) == n
        return out

    def grammar_accept(self, token: int) -> None:
        """Advance the grammar past `token` without sampling (realm_session_grammar_accept)."""
        with self.core.lock:
            if not self.core.call("realm_session_grammar_accept", self._h(), int(token)):
                raise core_error(self.core)

    def grammar_state(self) -> str | None:
        """None (no grammar), "running", "complete" (end of generation allowed) or "dead"."""
        with self.core.lock:
            v = self.core.call("realm_session_grammar_state", self._h())
            if v < 0:
                raise core_error(self.core)
            return self.GRAMMAR_STATES[v]

    # -------------------------------------------------------------- logprobs
    def set_logprobs(self, n: int | None) -> None:
        """Record log-probabilities with every sample from now on: None (off), or the sampled
        token's plus the n (0..MAX_LOGPROBS) most likely tokens' (realm_session_set_logprobs)."""
        with self.core.lock:
            if not self.core.call("realm_session_set_logprobs", self._h(), -1 if n is None else int(n)):
                raise core_error(self.core)

    def logprobs(self) -> list[tuple[int, float]]:
        """The last sample's (token id, natural-log probability): the sampled token first, then
        the most likely tokens, most likely first; [] when logprobs are off."""
        k = 1 + MAX_LOGPROBS
        c = self.core
        with c.lock:
            h = self._h()
            p = self._put_ids([0] * (2 * k))
            n = c.call("realm_session_logprobs", h, p, p + 4 * k, k)
            if n < 0:
                raise core_error(c)
            ids = c.read_i32(p, n)
            lps = struct.unpack(f"<{n}f", c.read_bytes(p + 4 * k, 4 * n)) if n else ()
            return list(zip(ids, lps))

    # ----------------------------------------------------------- speculative
    def verify(self, ids) -> list[int]:
        """One exact speculative step (realm_session_verify): ids = the last sampled token,
        then drafts; returns the tokens plain decoding samples next (accepted drafts, then
        one more, not yet evaluated)."""
        ids = [int(t) for t in ids]
        n = len(ids)
        c = self.core
        with c.lock:
            h = self._h()
            p = self._put_ids(ids + [0] * n)  # room for n results after the ids
            out = p + 4 * n
            r = c.call("realm_session_verify", h, p, n, out)
            if r < 0:
                raise core_error(c)
            return c.read_i32(out, r)

    def draft_ngram(self, last: int, ngram_min: int, ngram_max: int, k: int) -> list[int]:
        """Prompt-lookup drafts: up to k tokens continuing (history, last) (realm_session_draft_ngram)."""
        c = self.core
        with c.lock:
            h = self._h()
            p = self._put_ids([0] * k)
            r = c.call("realm_session_draft_ngram", h, int(last), int(ngram_min), int(ngram_max), p, int(k))
            if r < 0:
                raise core_error(c)
            return c.read_i32(self._ids, r)


    # ------------------------------------------------------------ embeddings
    def embed(self, ids) -> list[float]:
        """The embedding of ids (docs/SERVER.md): the mean of their final-norm hidden
        states, evaluated from an empty cache, L2-normalised; n_embd floats (f32 values).
        The session's cache is empty afterwards."""
        self.embed_begin()
        self.embed_add(ids)
        return self.embed_end()

    def embed_begin(self) -> None:
        """Start an embedding that embed_add() feeds in chunks (the server interleaves other work)."""
        c = self.core
        n = 4 * self.model.info.n_embd
        with c.lock:
            self._h()
            if not self._acc:
                self._acc = c.alloc(n)
            c.write(self._acc, bytes(n))
            c.call("realm_session_truncate", self.handle, 0)
            self._acc_n = 0

    def embed_add(self, ids) -> None:
        ids = list(ids)
        c = self.core
        with c.lock:
            h = self._h()
            if not self._acc:
                raise RealmError("embed_add before embed_begin")
            if not c.call("realm_session_embed", h, self._put_ids(ids), len(ids), self._acc):
                raise core_error(c)
            self._acc_n += len(ids)

    def embed_end(self) -> list[float]:
        """The embedding of everything embed_add() fed since embed_begin(); empties the cache."""
        c = self.core
        n_embd = self.model.info.n_embd
        with c.lock:
            self._h()
            if not self._acc or not self._acc_n:
                raise RealmError("nothing to embed: zero tokens")
            sums = array.array("f", c.read_bytes(self._acc, 4 * n_embd))
            c.call("realm_session_truncate", self.handle, 0)
            n, self._acc_n = self._acc_n, 0
        vec = [x / n for x in sums]          # the mean over the input's tokens, in double
        norm = math.sqrt(math.fsum(x * x for x in vec))
        if norm > 0:
            vec = [x / norm for x in vec]    # L2-normalised
        return array.array("f", vec).tolist()  # as f32 values, what the wire carries

