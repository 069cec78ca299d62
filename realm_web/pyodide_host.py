"""The Pyodide host of realm.wasm: the Python API running in the browser (or Node).

Inside Pyodide there is no wasmtime and no numpy. realm.wasm is instantiated by
JS (WebAssembly.instantiateStreaming) next to Pyodide's own module; this module
drives it through Pyodide's JS bridge:

* `JsCore` implements the core interface `CoreModel` uses (call, alloc, free,
  write, read_bytes, read_cstr, read_i32, write_i32, read_f32_rows, last_error,
  check, lock) over a JS object that owns one WebAssembly instance: realm.wasm
  (Memory64) or, where the engine has no Memory64, realm32.wasm (the JS side picks
  by feature detection; `width` says which). i64
  arguments go across as `BigInt`s; memory is read through a fresh typed-array
  view per call (memory.buffer changes whenever the memory grows).
* `JsSource` is a model source whose bytes come from JS. Python hands JS a
  destination pointer and a size; JS fetches the bytes (in chunks) and writes them
  straight into the instance's memory, so the weights never enter Python's heap
  (which stops near 3.75 GiB anyway).

The JS side (host/pyodide-worker.js) calls `install(new_core)` once, then
`load(js_source)` to get a `Realm`.

The JS objects this module expects:

    core   = {exports, memory, sigs,    // host/py-bridge.js newCore(); sigs as js-sdk/src/core.js parseSignatures:
              arch}                    // arch: "wasm64" | "wasm32" (optional: else read from sigs)
                                       // sigs[name] = {params: ["i64", "i32"], results: ["i64"]}
    source = {name, size, identity,    // identity: a string that changes when the bytes do
              read(offset, n)          // -> Uint8Array (or a Promise of one, with JSPI)
              copyTo(core, dst, offset, n)}  // writes file bytes [offset, offset+n) at dst
"""
from __future__ import annotations

import array
import sys
import threading

from . import core_model, store
from .abi import EXPORTS
from .errors import OutOfMemoryError, RealmError, check_abi, core_error
from .sampling import KNOBS, LLAMA_CPP

try:  # only inside Pyodide
    import js  # type: ignore
    from pyodide.ffi import JsException  # type: ignore
except ImportError:  # imported natively (docs, tests of the pure parts)
    js = None

    class JsException(Exception):  # type: ignore[no-redef]
        pass

IN_PYODIDE = sys.platform == "emscripten"


def _await(value):
    """A JS Promise's result (needs JSPI: pyodide.ffi.run_sync); other values as they are."""
    if value is not None and hasattr(value, "then") and callable(getattr(value, "then", None)):
        from pyodide.ffi import can_run_sync, run_sync  # type: ignore
        if not can_run_sync():
            raise RealmError("the JS source returned a Promise but this Pyodide cannot block on it "
                             "(no JSPI here): give the source synchronous read/copyTo methods")
        return run_sync(value)
    return value


class JsCore:
    """One realm.wasm instance owned by JS, with the core interface of wasm_host.WasmCore."""

    def __init__(self, jscore) -> None:
        self.js = jscore
        self.lock = threading.RLock()
        self._exports = jscore.exports
        self._memory = jscore.memory
        self._sigs = jscore.sigs
        # which build the JS side compiled: "relaxed" (relaxed SIMD) or "simd128"
        self.simd = str(getattr(jscore, "simd", None) or "simd128")
        self._u8 = js.Uint8Array
        self._bigint = js.BigInt
        self._fns: dict[str, tuple] = {}
        # "wasm64" (realm.wasm: i64 pointers) or "wasm32" (realm32.wasm, for engines
        # without Memory64): as wasm_host.WasmCore, the pointer width is the only difference
        free = getattr(self._sigs, "realm_free", None)   # realm_free(void *): i32 only in wasm32
        narrow = free is not None and str(free.params[0]) == "i32"
        self.width = str(getattr(jscore, "arch", None) or ("wasm32" if narrow else "wasm64"))
        self.ptr_format = "Q" if self.width == "wasm64" else "I"  # struct char of one pointer in memory
        check_abi(self, "the JS-owned realm.wasm")

    # ---------------------------------------------------------------- exports
    def _bind(self, name: str) -> tuple:
        fn = getattr(self._exports, name, None)
        sig = getattr(self._sigs, name, None)
        if fn is None or sig is None:
            raise RealmError(f"realm.wasm has no export {name!r} (rebuild with `python build.py`)")
        params = [str(t) for t in sig.params]
        results = [str(t) for t in sig.results]
        wide = tuple(i for i, t in enumerate(params) if t == "i64")
        result = results[0] if results else ""
        if self.width == "wasm32" and "*" in EXPORTS.get(name, ((), ""))[1]:
            result = "ptr32"  # JS reads i32 as signed; a pointer above 2 GiB is unsigned
        entry = self._fns[name] = (fn, wide, len(params), result)
        return entry

    def call(self, name: str, *args):
        """Call an export with Python ints; a trap becomes a RealmError naming the export."""
        fn, wide, nparams, result = self._fns.get(name) or self._bind(name)
        if len(args) != nparams:
            raise RealmError(f"{name} takes {nparams} arguments, got {len(args)}")
        if wide:
            args = list(args)
            big = self._bigint
            for i in wide:
                args[i] = big(int(args[i]))
        try:
            r = fn(*args)
        except JsException as e:
            raise RealmError(f"realm.wasm trapped in {name}: {e}") from None
        if not result:
            return None
        if result == "ptr32":
            return int(r) & 0xFFFFFFFF
        return float(r) if result[0] == "f" else int(r)

    def last_error(self) -> str:
        p = self.call("realm_last_error")
        return self.read_cstr(p) if p else ""

    def check(self, status: int, what: str) -> int:
        if status is None or status <= 0:
            raise core_error(self, what)
        return status

    # ----------------------------------------------------------------- memory
    def memory_bytes(self) -> int:
        return int(self._memory.buffer.byteLength)

    def _view(self, ptr: int, n: int):
        buf = self._memory.buffer  # fresh: a grow detaches the old ArrayBuffer
        if ptr <= 0 or n < 0 or ptr + n > buf.byteLength:
            raise RealmError(f"view of {n} bytes at {ptr:#x} is outside wasm memory")
        return self._u8.new(buf, ptr, n)

    def read_bytes(self, ptr: int, n: int) -> bytes:
        return self._view(ptr, n).to_bytes() if n else b""

    def read_cstr(self, ptr: int, limit: int = 1 << 20) -> str:
        size = int(self._memory.buffer.byteLength)
        v = self._view(ptr, max(0, min(limit, size - ptr)))
        n = v.indexOf(0)
        if n >= 0:
            v = v.subarray(0, n)
        return v.to_bytes().decode("utf-8", "replace")

    def write(self, ptr: int, data) -> None:
        data = memoryview(data).cast("B")
        if len(data):
            self._view(ptr, len(data)).assign(data)

    def read_i32(self, ptr: int, n: int) -> list[int]:
        if not n:
            return []
        a = array.array("i")
        a.frombytes(self.read_bytes(ptr, 4 * n))
        return a.tolist()

    def write_i32(self, ptr: int, values) -> None:
        if len(values):
            self.write(ptr, array.array("i", values).tobytes())

    def read_f32_rows(self, ptr: int, rows: int, cols: int) -> list:
        """A copy of rows x cols f32 at ptr, as a list of array('f') rows (no numpy here)."""
        raw = self.read_bytes(ptr, 4 * rows * cols)
        out = []
        for r in range(rows):
            a = array.array("f")
            a.frombytes(raw[4 * cols * r:4 * cols * (r + 1)])
            out.append(a)
        return out

    def alloc(self, n: int) -> int:
        p = self.call("realm_alloc", int(max(n, 1)))
        if not p:
            raise OutOfMemoryError(f"realm.wasm could not allocate {n:,} bytes: {self.last_error()}")
        return p

    def free(self, ptr: int) -> None:
        if ptr:
            self.call("realm_free", ptr)

    def alloc_bytes(self, data: bytes) -> int:
        p = self.alloc(len(data) + 1)
        self.write(p, bytes(data) + b"\0")
        return p


class JsSource:
    """A GGUF whose bytes JS provides (fetch, File, fs); see the module docstring."""

    def __init__(self, jssrc) -> None:
        self.js = jssrc
        self.name = str(jssrc.name)
        self.size = int(jssrc.size)
        self.identity = ("js", str(jssrc.identity), self.size)

    def read(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self.size - offset))
        data = _await(self.js.read(offset, n))
        out = data.to_bytes() if hasattr(data, "to_bytes") else bytes(data)
        if len(out) != n:
            raise RealmError(f"{self.name}: read {len(out)} bytes at {offset}, wanted {n}")
        return out

    def copy_to_core(self, core: JsCore, dst: int, offset: int, n: int) -> None:
        """JS writes file bytes [offset, offset+n) into the core's memory at dst."""
        if offset + n > self.size:
            raise RealmError(f"{self.name}: {n} bytes at {offset} run past the end ({self.size} bytes)")
        try:
            _await(self.js.copyTo(core.js, dst, offset, n))
        except JsException as e:
            raise RealmError(f"{self.name}: loading the weights failed: {e}") from None


# ------------------------------------------------------- the worker's entry points

_new_core = None


def _js_core() -> JsCore:
    if _new_core is None:
        raise RealmError("realm_web.pyodide_host.install(new_core) has not been called")
    return JsCore(_new_core())


def install(new_core) -> None:
    """Make every CoreModel in this interpreter use a fresh JS-owned instance from `new_core()`."""
    global _new_core
    _new_core = new_core
    core_model.set_core_factory(_js_core)


def _absent(x) -> bool:
    """JS null and undefined arrive as JsNull / None."""
    return x is None or type(x).__name__ == "JsNull"


def load(jssrc, n_ctx: int | None = None):
    """A Realm on a JS source (the model is shared with any other Realm of the same identity)."""
    from .realm import Realm
    src = jssrc if isinstance(jssrc, JsSource) else JsSource(jssrc)
    return Realm.load(src, n_ctx=None if _absent(n_ctx) else int(n_ctx))


def _kwargs(opts) -> dict:
    if _absent(opts):
        return {}
    d = opts.to_py() if hasattr(opts, "to_py") else dict(opts)
    kw = {k: v for k, v in d.items() if not _absent(v)}
    # JS numbers arrive as floats: give each setting its type (the sampling table's)
    for k in ("max_tokens", "seed"):
        if k in kw:
            kw[k] = int(kw[k])
    for k in KNOBS:
        if k in kw:
            kw[k] = type(LLAMA_CPP[k])(kw[k])
    return kw


def stream(realm, prompt, opts=None):
    """An iterator of text pieces (prompt: a string, or a JS array of ids)."""
    if hasattr(prompt, "to_py"):
        prompt = [int(t) for t in prompt.to_py()]
    return realm.stream(prompt, **_kwargs(opts))


def chat_stream(realm, messages, opts=None):
    msgs = messages.to_py() if hasattr(messages, "to_py") else list(messages)
    return realm.chat_stream(msgs, **_kwargs(opts))


def next_piece(it):
    """The next piece of a stream, or None at its end."""
    return next(it, None)


def stats(realm) -> dict:
    s = realm.last_stats
    return {"prompt_tokens": s.prompt_tokens, "cached_tokens": s.cached_tokens,
            "generated_tokens": s.generated_tokens, "prompt_seconds": s.prompt_seconds,
            "generate_seconds": s.generate_seconds, "prompt_tps": s.prompt_tps,
            "generate_tps": s.generate_tps, "finish_reason": s.finish_reason, "tokens": list(s.tokens)}


def loaded_models() -> list:
    """[name, refcount] of every model this interpreter holds."""
    return [list(x) for x in store.loaded()]


def info(realm) -> dict:
    i = realm.info
    meta = realm.metadata()
    return {"name": meta.get("general.name") or realm.model.path, "architecture": meta.get("general.architecture"),
            "n_layer": i.n_layer, "n_embd": i.n_embd, "n_vocab": i.n_vocab, "n_ctx": realm.n_ctx,
            "loaded": loaded_models()}
