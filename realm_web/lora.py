"""LoRA adapters (llama.cpp's GGUF format) inside a CoreModel's instance.

An adapter is loaded once per model instance, like the base weights: every
`Realm`, session and server tenant naming the same file (device, inode, size,
mtime) on the same model shares one copy, refcounted. The core validates it
against the base model (core/lora.c) and applies it merge-free, so the base
weights are never touched and sessions with different adapters share a batch.
"""
from __future__ import annotations

import math
import os
import struct
import threading

from .errors import RealmError, core_error
from .sources import as_source

MAX_PER_SESSION = 8  # core/model.h SESSION_MAX_LORA


class LoraAdapter:
    """One adapter file in a model's instance (realm_lora_load). Get it through
    `acquire`, hand it back through `release`; sessions keep it alive while they use it."""

    def __init__(self, model, source) -> None:
        self.model = model
        self.source = as_source(source)
        self.path = str(self.source.name)
        self.handle = 0
        c = model.core
        size = self.source.size
        with c.lock:
            buf = c.alloc(max(size, 1))
            if not buf:
                raise core_error(c, self.path)
            c.write(buf, self.source.read(0, size))
            self.handle = c.call("realm_lora_load", model.handle, buf, size)
            if not self.handle:
                err = core_error(c, self.path)
                c.free(buf)
                raise err
            out = c.alloc(12)
            c.call("realm_lora_info", self.handle, out)
            n, rank, alpha = struct.unpack("<IIf", c.read_bytes(out, 12))
            c.free(out)
        self.n_tensors, self.rank, self.alpha = n, rank, alpha
        self._on_close: list = []

    def on_close(self, fn) -> None:
        """fn(adapter) when it is freed (the GPU backend drops its uploaded copies)."""
        self._on_close.append(fn)

    @property
    def closed(self) -> bool:
        return not self.handle

    def close(self) -> None:
        """Frees it; the core detaches it from every session still using it."""
        if self.handle and self.model.handle:
            with self.model.core.lock:
                self.model.core.call("realm_lora_free", self.handle)
        self.handle = 0
        for fn in self.__dict__.pop("_on_close", []):
            fn(self)

    def __repr__(self) -> str:
        return f"LoraAdapter({self.path!r}, tensors={self.n_tensors}, rank={self.rank}, alpha={self.alpha})"


_lock = threading.Lock()


def acquire(model, path) -> LoraAdapter:
    """The model's adapter for this file, loading it on first use (refcounted)."""
    source = as_source(os.fspath(path) if isinstance(path, os.PathLike) else path)
    key = source.identity
    with _lock:
        cache = model.__dict__.setdefault("_loras", {})
        entry = cache.get(key)
        if entry and not entry[0].closed:
            entry[1] += 1
            return entry[0]
        a = LoraAdapter(model, source)
        cache[key] = [a, 1]
        return a


def retain(adapter: LoraAdapter) -> LoraAdapter:
    """One more reference to an adapter already held (a request that uses it keeps it alive)."""
    with _lock:
        for entry in adapter.model.__dict__.get("_loras", {}).values():
            if entry[0] is adapter:
                entry[1] += 1
                return adapter
    raise RealmError(f"LoRA adapter {adapter.path} was unloaded")


def release(adapter: LoraAdapter) -> None:
    """Drop one reference; the last one frees the adapter."""
    with _lock:
        cache = adapter.model.__dict__.get("_loras", {})
        for key, entry in list(cache.items()):
            if entry[0] is adapter:
                entry[1] -= 1
                if entry[1] <= 0:
                    del cache[key]
                    adapter.close()
                return


def close_all(model) -> None:
    """Every adapter of a model that is being closed."""
    with _lock:
        for a, _ in model.__dict__.pop("_loras", {}).values():
            a.handle = 0  # realm_model_free frees them with the model


def parse_spec(spec: str) -> tuple[str, float]:
    """'PATH[:SCALE]' (realm run --lora) -> (path, scale); a path with a colon stays whole
    unless what follows the last colon is a number."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            return path, check_scale(float(tail))
        except ValueError:
            pass
    return spec, 1.0


def check_scale(scale) -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise RealmError(f"LoRA scale must be a number, got {scale!r}") from None
    if not math.isfinite(s):
        raise RealmError(f"LoRA scale must be a finite number, got {scale!r}")
    return s


def check_adapters(adapters, model) -> list:
    """[(LoraAdapter, scale), ...] for one session of `model` (a CoreModel), checked the way
    every host's set_lora needs: scales finite numbers, at most MAX_PER_SESSION adapters,
    each loaded for this model and not unloaded. Returns the pairs with float scales."""
    pairs = [(a, check_scale(sc)) for a, sc in adapters]
    if len(pairs) > MAX_PER_SESSION:
        raise RealmError(f"at most {MAX_PER_SESSION} LoRA adapters per session, got {len(pairs)}")
    for a, _ in pairs:
        if a.model is not model:
            raise RealmError(f"LoRA adapter {a.path} was loaded for another model")
        if a.closed:
            raise RealmError(f"LoRA adapter {a.path} was unloaded")
    return pairs
