"""The native host of realm.wasm: one wasmtime instance, its memory, its exports.

This module knows nothing about models; it turns the raw ABI (i64 pointers,
status codes, the core's error message) into Python calls and exceptions.
See docs/ARCHITECTURE.md for the ABI itself.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

import numpy as np
import wasmtime

from .errors import OutOfMemoryError, RealmError, check_abi, core_error
from .wasm_binary import set_imported_memory_max

_WASM_DIR = Path(__file__).resolve().parent / "wasm"
# Which of build.py's four modules this host loads, when none is named: threads
# (realm-mt*) when built, relaxed SIMD (*-relaxed) when the engine has it and
# REALM_SIMD is not "simd128". All of them compute the same bits. REALM_WASM is
# "wasm64" (Memory64, realm*.wasm, the default where the engine has Memory64),
# "wasm32" (realm32*.wasm: 4 GiB at most; forced for tests and benchmarks) or
# the path of another build (a debug build, say) for development.
WIDTHS = ("auto", "wasm64", "wasm32")

# A module with one memory64 memory: validates only where Memory64 is enabled
# (the feature probe the JS hosts use too).
MEMORY64_PROBE = bytes.fromhex("0061736d010000000503010401")


# a module path set by code (benchmarks) instead of REALM_WASM
WASM_PATH: Path | None = None


def _env_wasm() -> str:
    if WASM_PATH is not None:
        return str(WASM_PATH)
    return os.environ.get("REALM_WASM", "") or "auto"

# i16x8.relaxed_dot_i8x16_i7x16_s in a function body: a module that validates
# only where relaxed SIMD is enabled (the probe JS hosts use too).
RELAXED_PROBE = bytes.fromhex("0061736d010000000105016000017b030201000a2b012900fd0c" + "00" * 16
                              + "fd0c" + "00" * 16 + "fd92020b")

# Each worker instance's shadow stack (the main instance has the module's own
# 8 MiB one). Worker jobs are kernels and attention: a few KiB deep.
WORKER_STACK = 1 << 20

# Address space wasmtime reserves for one instance's memory. With
# memory_may_move=False the memory never moves, so numpy views stay valid
# across growth, and a grow past the reservation fails cleanly (-1).
MEMORY_RESERVATION = 64 << 30

_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_modules: dict[Path, wasmtime.Module] = {}


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
            # The module is ours (built by build.py), not untrusted code: the
            # Spectre guard on every Memory64 access (a cmov after the bounds
            # check) protects nothing here and costs 7-12 % (bench/profile_core.py).
            # The bounds checks themselves stay.
            cfg.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false")
            cfg.wasm_threads = True
            cfg.shared_memory = True
            cfg.wasm_relaxed_simd = True
            _engine = wasmtime.Engine(cfg)
        return _engine


def relaxed_simd() -> bool:
    """Whether this engine runs relaxed SIMD (and REALM_SIMD does not say simd128)."""
    mode = os.environ.get("REALM_SIMD", "auto").lower()
    if mode not in ("auto", "relaxed", "simd128"):
        raise RealmError(f"REALM_SIMD={mode!r}: use auto, relaxed or simd128")
    if mode == "simd128":
        return False
    try:
        wasmtime.Module.validate(engine(), RELAXED_PROBE)
        return True
    except wasmtime.WasmtimeError:
        if mode == "relaxed":
            raise RealmError("REALM_SIMD=relaxed, but this wasmtime does not run relaxed SIMD") from None
        return False


def memory64() -> bool:
    """Whether this engine runs Memory64 modules (feature detection, as the JS hosts)."""
    try:
        wasmtime.Module.validate(engine(), MEMORY64_PROBE)
        return True
    except wasmtime.WasmtimeError:
        return False


def pointer_width() -> str:
    """"wasm64" or "wasm32": REALM_WASM when it names one, else wasm64 where the engine has Memory64."""
    mode = _env_wasm().lower()
    if mode not in WIDTHS:
        return "wasm64"  # a path: its own module says (WasmCore.width)
    if mode == "auto":
        return "wasm64" if memory64() else "wasm32"
    if mode == "wasm64" and not memory64():
        raise RealmError("REALM_WASM=wasm64, but this wasmtime does not run Memory64; use wasm32")
    return mode


def default_wasm_path() -> Path:
    """REALM_WASM's path, else the best of build.py's modules that exists for
    pointer_width() (threads, then relaxed SIMD where the engine has it)."""
    env = _env_wasm()
    if env.lower() not in WIDTHS:
        return Path(env)
    prefix = "realm32" if pointer_width() == "wasm32" else "realm"
    relaxed = relaxed_simd()
    names = [f"{base}{suffix}.wasm" for base in (f"{prefix}-mt", prefix)
             for suffix in (("-relaxed", "") if relaxed else ("",))]
    return next((p for p in (_WASM_DIR / n for n in names) if p.exists()), _WASM_DIR / f"{prefix}.wasm")


def module(path: str | os.PathLike | None = None) -> wasmtime.Module:
    """The compiled module at path (default default_wasm_path()), compiled once per process."""
    path = Path(path or default_wasm_path())
    eng = engine()
    with _engine_lock:
        mod = _modules.get(path)
        if mod is None:
            if not path.exists():
                raise RealmError(f"{path} is missing: run `python build.py` first")
            data = path.read_bytes()
            try:  # realm-mt.wasm declares V8's 16 GiB; here the reservation is the limit
                mod = wasmtime.Module(eng, set_imported_memory_max(data, MEMORY_RESERVATION >> 16))
            except ValueError:  # no memory import: realm.wasm
                mod = wasmtime.Module(eng, data)
            except wasmtime.WasmtimeError:  # realm32-mt.wasm: a 32-bit memory keeps its 4 GiB maximum
                mod = wasmtime.Module(eng, data)
            _modules[path] = mod
        return mod


class _SharedMemory(wasmtime.SharedMemory):
    """wasmtime-py 50's SharedMemory builds its import extern from a pointer to
    a pointer (TypeError on instantiation); this one passes the pointer."""

    def _as_extern(self):
        from wasmtime import _ffi as ffi
        ptr = ctypes.cast(self.ptr(), ctypes.POINTER(ffi.wasmtime_sharedmemory))
        return ffi.wasmtime_extern_t(ffi.WASMTIME_EXTERN_SHAREDMEMORY, ffi.wasmtime_extern_union(sharedmemory=ptr))


class WasmCore:
    """One instance of realm.wasm with typed access to its exports and memory,
    and, with realm-mt.wasm, its worker threads (set_threads).

    Not thread-safe: a wasmtime Store runs one call at a time. Callers that
    share an instance across threads hold `self.lock`.
    """

    def __init__(self, threads: int | None = None, path: str | os.PathLike | None = None) -> None:
        """threads: see set_threads. path: another build of the module (default default_wasm_path())."""
        self.path = Path(path or default_wasm_path())
        self.module = module(self.path)
        # which instruction set the kernels use: "relaxed" (relaxed SIMD) or "simd128"
        self.simd = "relaxed" if self.path.stem.endswith("-relaxed") else "simd128"
        self.store = wasmtime.Store(engine())
        self.lock = threading.RLock()
        self.shared: _SharedMemory | None = None
        self._workers: list[threading.Thread] = []
        self._stacks: list[int] = []
        imports = []
        for imp in self.module.imports:
            imports.append(self._import_for(imp.module, imp.name, imp.type))
        self.instance = wasmtime.Instance(self.store, self.module, imports)
        ex = self.instance.exports(self.store)
        self.memory = None if self.shared else ex["memory"]
        mem_type = self.shared.type() if self.shared else self.memory.type(self.store)
        # "wasm64" (Memory64: i64 pointers) or "wasm32" (i32 pointers: the only
        # difference; handles and pointers are unsigned Python ints either way)
        self.width = "wasm64" if mem_type.is_64 else "wasm32"
        self.ptr_format = "Q" if self.width == "wasm64" else "I"  # struct char of one pointer in memory
        # the most linear memory this instance can have: wasm32's 4 GiB, else the reservation
        self.memory_limit = (1 << 32) if self.width == "wasm32" else MEMORY_RESERVATION
        self._exports = ex
        self._funcs: dict[str, wasmtime.Func] = {}
        check_abi(self, self.path)
        if threads and threads > 1:
            self.set_threads(threads)

    # ---------------------------------------------------------------- imports
    def _import_for(self, mod: str, name: str, ty):
        if mod == "env" and name == "memory" and isinstance(ty, wasmtime.MemoryType) and ty.is_shared:
            # realm-mt.wasm: the memory every worker instance will share. The
            # maximum is the reservation, so it never moves (see MEMORY_RESERVATION).
            pages = min(ty.limits.max or MEMORY_RESERVATION >> 16, MEMORY_RESERVATION >> 16)
            self.shared = _SharedMemory(engine(), wasmtime.MemoryType(
                wasmtime.Limits(ty.limits.min, pages), is_64=ty.is_64, shared=True))
            return self.shared
        if mod == "env" and name == "host_log":
            def host_log(ptr: int, n: int) -> None:
                import sys
                sys.stderr.write(self.read_bytes(ptr, n).decode("utf-8", "replace"))
            return wasmtime.Func(self.store, ty, host_log)
        raise RealmError(f"realm.wasm imports {mod}.{name}, which this host does not provide")

    # ---------------------------------------------------------------- threads
    @property
    def threads(self) -> int:
        """Threads that run this instance's matmuls and attention (1 + workers)."""
        return 1 + len(self._workers)

    def set_threads(self, n: int) -> int:
        """Run the core's work on n threads (this one and n - 1 workers, each a
        wasmtime instance of the same module over the shared memory, on its own
        Python thread: wasm calls release the GIL). Returns the count in effect:
        1 with realm.wasm, which has no threads."""
        n = max(1, int(n))
        with self.lock:
            if n == self.threads or not self.shared or not self.call("realm_threads_supported"):
                return self.threads
            self._stop_workers()
            for index in range(1, n):
                stack = self.alloc(WORKER_STACK)
                self._stacks.append(stack)
                t = threading.Thread(target=_worker_main, args=(self.module, self.shared, stack + WORKER_STACK, index),
                                     name=f"realm-worker-{index}", daemon=True)
                t.start()
                self._workers.append(t)
            while self.call("realm_threads_live") < n - 1:  # every worker inside realm_thread_run
                if not all(t.is_alive() for t in self._workers):
                    self._stop_workers()
                    raise RealmError("a realm.wasm worker thread failed to start (see stderr)")
                threading.Event().wait(0.001)
            self.call("realm_threads_use", n - 1, 1)  # a Python thread may block in atomic.wait
            return self.threads

    def _stop_workers(self) -> None:
        if self._workers:
            self.call("realm_threads_stop")
            for t in self._workers:
                t.join()
        for p in self._stacks:
            self.free(p)
        self._workers, self._stacks = [], []

    def close(self) -> None:
        """Stop the worker threads (the instance itself goes with its last reference)."""
        with self.lock:
            self._stop_workers()

    # ---------------------------------------------------------------- exports
    def fn(self, name: str):
        f = self._funcs.get(name)
        if f is None:
            try:
                f = self._exports[name]
            except KeyError:
                raise RealmError(f"realm.wasm has no export {name!r} (rebuild with `python build.py`)") from None
            if self.width == "wasm32":
                f = _unsigned_pointers(f, name)
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
        """Raise the core's error (its kind's class) when an export returned failure (0 or negative)."""
        if status is None or status <= 0:
            raise core_error(self, what)
        return status

    # ----------------------------------------------------------------- memory
    def memory_bytes(self) -> int:
        return self.shared.data_len() if self.shared else self.memory.data_len(self.store)

    def buffer(self) -> np.ndarray:
        """A zero-copy uint8 view of all of linear memory (valid until the instance dies)."""
        n = self.memory_bytes()
        ptr = self.shared.data_ptr() if self.shared else self.memory.data_ptr(self.store)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(n,))

    def view(self, ptr: int, dtype, count: int) -> np.ndarray:
        """A zero-copy numpy view of `count` items at `ptr`."""
        dt = np.dtype(dtype)
        nbytes = dt.itemsize * count
        if ptr <= 0 or ptr + nbytes > self.memory_bytes():
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
            raise OutOfMemoryError(f"realm.wasm could not allocate {n:,} bytes: {self.last_error()}")
        return p

    def free(self, ptr: int) -> None:
        if ptr:
            self.call("realm_free", ptr)

    def alloc_bytes(self, data: bytes) -> int:
        p = self.alloc(len(data) + 1)
        self.write(p, data + b"\0")
        return p



def _signed32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def _unsigned_pointers(f: wasmtime.Func, name: str):
    """wasm32: wasmtime reads and writes i32 as signed; pointers above 2 GiB are
    unsigned addresses, so pointer arguments go in as signed i32 and pointer
    results come back unsigned."""
    from .abi import EXPORTS
    ctypes_, ret = EXPORTS.get(name, ((), ""))
    ptr_args = tuple(i for i, t in enumerate(ctypes_) if "*" in t)
    ptr_ret = "*" in ret

    def call(store, *args):
        if ptr_args:
            args = list(args)
            for i in ptr_args:
                if i < len(args) and args[i] >= 1 << 31:
                    args[i] -= 1 << 32
        r = f(store, *args)
        return r & 0xFFFFFFFF if ptr_ret and r is not None else r
    return call


def _worker_main(mod: wasmtime.Module, shared: _SharedMemory, stack_top: int, index: int) -> None:
    """A worker thread: its own store and instance over the shared memory, its
    own stack, then realm_thread_run until realm_threads_stop."""
    try:
        store = wasmtime.Store(engine())
        imports = [shared if imp.name == "memory" else _no_import(store, imp) for imp in mod.imports]
        inst = wasmtime.Instance(store, mod, imports)
        ex = inst.exports(store)
        sp = ex["__stack_pointer"]
        top = stack_top & ~15
        sp.set_value(store, wasmtime.Val.i64(top) if str(sp.type(store).content) == "i64" else wasmtime.Val.i32(_signed32(top)))
        ex["realm_thread_run"](store, index)
    except Exception as e:  # a trap here is a core bug: say so loudly
        sys.stderr.write(f"realm.wasm worker {index} failed: {e}\n")


def _no_import(store, imp):
    def unavailable(*_a):
        raise RealmError(f"{imp.module}.{imp.name} called on a worker thread")
    return wasmtime.Func(store, imp.type, unavailable)
