"""The native host of realm.wasm: one wasmtime instance, its memory, its exports.

This module knows nothing about models; it turns the raw ABI (i64 pointers,
status codes, the core's error message) into Python calls and exceptions.
See docs/ARCHITECTURE.md for the ABI itself.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import wasmtime

from .errors import RealmError

# REALM_WASM points at another build (a debug build, say) for development.
WASM_PATH = Path(os.environ.get("REALM_WASM") or Path(__file__).resolve().parent / "wasm" / "realm.wasm")

# Address space wasmtime reserves for one instance's memory. With
# memory_may_move=False the memory never moves, so numpy views stay valid
# across growth, and a grow past the reservation fails cleanly (-1).
MEMORY_RESERVATION = 64 << 30

_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_module: wasmtime.Module | None = None


def engine() -> wasmtime.Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            cfg = wasmtime.Config()
            cfg.wasm_memory64 = True
            cfg.wasm_simd = True
            cfg.wasm_bulk_memory = True
            cfg.memory_reservation = MEMORY_RESERVATION
            cfg.memory_may_move = False
            cfg.memory_guard_size = 1 << 16
            cfg.cranelift_opt_level = "speed"
            _engine = wasmtime.Engine(cfg)
        return _engine


def module() -> wasmtime.Module:
    """The compiled module, compiled once per process (cached on disk by path+mtime)."""
    global _module
    eng = engine()
    with _engine_lock:
        if _module is None:
            if not WASM_PATH.exists():
                raise RealmError(f"{WASM_PATH} is missing: run `python build.py` first")
            _module = wasmtime.Module.from_file(eng, str(WASM_PATH))
        return _module


class WasmCore:
    """One instance of realm.wasm with typed access to its exports and memory.

    Not thread-safe: a wasmtime Store runs one call at a time. Callers that
    share an instance across threads hold `self.lock`.
    """

    def __init__(self) -> None:
        self.store = wasmtime.Store(engine())
        self.lock = threading.RLock()
        imports = []
        for imp in module().imports:
            fn = self._import_for(imp.module, imp.name, imp.type)
            imports.append(fn)
        self.instance = wasmtime.Instance(self.store, module(), imports)
        ex = self.instance.exports(self.store)
        self.memory: wasmtime.Memory = ex["memory"]
        self._exports = ex
        self._funcs: dict[str, wasmtime.Func] = {}

    # ---------------------------------------------------------------- imports
    def _import_for(self, mod: str, name: str, ty):
        if mod == "env" and name == "host_log":
            def host_log(ptr: int, n: int) -> None:
                import sys
                sys.stderr.write(self.read_bytes(ptr, n).decode("utf-8", "replace"))
            return wasmtime.Func(self.store, ty, host_log)
        raise RealmError(f"realm.wasm imports {mod}.{name}, which this host does not provide")

    # ---------------------------------------------------------------- exports
    def fn(self, name: str) -> wasmtime.Func:
        f = self._funcs.get(name)
        if f is None:
            try:
                f = self._exports[name]
            except KeyError:
                raise RealmError(f"realm.wasm has no export {name!r} (rebuild with `python build.py`)") from None
            self._funcs[name] = f
        return f

    def call(self, name: str, *args):
        """Call an export; a wasm trap becomes a RealmError naming the export."""
        try:
            return self.fn(name)(self.store, *args)
        except wasmtime.Trap as e:
            raise RealmError(f"realm.wasm trapped in {name}: {e}") from None
        except wasmtime.WasmtimeError as e:
            raise RealmError(f"realm.wasm failed in {name}: {e}") from None

    def last_error(self) -> str:
        p = self.call("realm_last_error")
        return self.read_cstr(p) if p else ""

    def check(self, status: int, what: str) -> int:
        """Raise the core's error message when an export returned failure (0 or negative)."""
        if status is None or status <= 0:
            msg = self.last_error() or "unknown error"
            raise RealmError(f"{what}: {msg}")
        return status

    # ----------------------------------------------------------------- memory
    def buffer(self) -> np.ndarray:
        """A zero-copy uint8 view of all of linear memory (valid until the instance dies)."""
        n = self.memory.data_len(self.store)
        ptr = self.memory.data_ptr(self.store)
        import ctypes
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(n,))

    def view(self, ptr: int, dtype, count: int) -> np.ndarray:
        """A zero-copy numpy view of `count` items at `ptr`."""
        dt = np.dtype(dtype)
        nbytes = dt.itemsize * count
        if ptr <= 0 or ptr + nbytes > self.memory.data_len(self.store):
            raise RealmError(f"view of {nbytes} bytes at {ptr:#x} is outside wasm memory")
        return self.buffer()[ptr:ptr + nbytes].view(dt)

    def read_bytes(self, ptr: int, n: int) -> bytes:
        return bytes(self.view(ptr, np.uint8, n)) if n else b""

    def read_cstr(self, ptr: int, limit: int = 1 << 20) -> str:
        buf = self.buffer()
        end = min(ptr + limit, len(buf))
        chunk = buf[ptr:end]
        z = np.flatnonzero(chunk == 0)
        n = int(z[0]) if len(z) else len(chunk)
        return bytes(chunk[:n]).decode("utf-8", "replace")

    def write(self, ptr: int, data) -> None:
        arr = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).reshape(-1)
        self.view(ptr, np.uint8, arr.size)[:] = arr

    def read_i32(self, ptr: int, n: int) -> list[int]:
        return self.view(ptr, np.int32, n).tolist() if n else []

    def write_i32(self, ptr: int, values) -> None:
        if len(values):
            self.view(ptr, np.int32, len(values))[:] = values

    def read_f32_rows(self, ptr: int, rows: int, cols: int) -> np.ndarray:
        """A copy of rows x cols f32 at ptr."""
        return self.view(ptr, np.float32, rows * cols).reshape(rows, cols).copy()

    def alloc(self, n: int) -> int:
        p = self.call("realm_alloc", int(max(n, 1)))
        if not p:
            raise MemoryError(f"realm.wasm could not allocate {n:,} bytes: {self.last_error()}")
        return p

    def free(self, ptr: int) -> None:
        if ptr:
            self.call("realm_free", ptr)

    def alloc_bytes(self, data: bytes) -> int:
        p = self.alloc(len(data) + 1)
        self.write(p, data + b"\0")
        return p

    def memory_bytes(self) -> int:
        return self.memory.data_len(self.store)
