"""The WebGPU backend: the core's plan of a forward step, executed with wgpu-py.

    from realm_web import gpu
    model = gpu.acquire_model(path)           # a vocab-only CoreModel, prepared for the GPU
    s = gpu.open_gpu_session(model, n_ctx)    # same interface as core_model.Session
    ...
    s.close(); store.release(model)

Weights are uploaded once per model file per device (`GpuModel`, refcounted,
shared by every session of that file); each session has its own KV cache and
activations. The kernels are the WGSL files in wgsl/, the plan comes from the
core (core/api_gpu.c); docs/GPU.md has the whole story.
"""
from __future__ import annotations

import os
import threading

from ..errors import RealmError
from .device import GPUUnavailable, adapters, available, get_device, has_hardware_gpu  # noqa: F401

__all__ = ["GPUUnavailable", "GpuModel", "acquire_model", "adapters", "available", "get_device",
           "has_hardware_gpu", "open_gpu_session", "release_gpu_model", "resolve_device"]


class GpuModel:
    """One model file's plan and weights on one device."""

    def __init__(self, key, dev, plan, weights, opts=None) -> None:
        self.key = key
        self.opts = opts  # the GpuOptions the plan was made for (LoRA plans use the same)
        self.dev = dev
        self.plan = plan
        self.weights = weights
        self.refs = 0
        self._batch = None  # batch.GpuBatch, made by the first batched step

    # continuous batching (realm_web/gpu/batch.py): CoreModel's batch API for GPU sessions
    def batch_max_tokens(self) -> int:
        """Tokens one batched step may hold, all sessions together (the plan's max_batch)."""
        return self.plan.max_batch

    def eval_batch(self, sessions, chunks, all_logits=False, logits=True) -> None:
        from .batch import eval_batch
        eval_batch(sessions, chunks, all_logits, logits)

    def step_batch(self, sessions, tokens) -> list[int]:
        from .batch import step_batch
        return step_batch(sessions, tokens)

    def destroy(self) -> None:
        if self._batch is not None:
            self._batch.destroy()
            self._batch = None
        self.weights.destroy()
        self.__dict__.pop("_lora_tensors", None)  # (realm_web/gpu/lora.py)


_lock = threading.Lock()
_models: dict = {}


def _source_key(core_model) -> tuple:
    src = getattr(core_model, "source", None)
    if src is not None and getattr(src, "identity", None) is not None:
        return tuple(src.identity)
    st = os.stat(core_model.path)
    return ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def prepare_model(core_model) -> None:
    """Make a CoreModel (vocab-only is enough) describe its tensors and config for the GPU;
    refreshes core_model.info with the full hyperparameters."""
    from .plan import model_info, prepare
    prepare(core_model)
    core_model.info = model_info(core_model)


def acquire_model(path):
    """The process's CoreModel for `path` (a path or a source) without a CPU copy of the
    weights (store.acquire vocab-only), prepared for the GPU. Release it with store.release."""
    from .. import store
    m = store.acquire(path, vocab_only=True)
    try:
        prepare_model(m)
    except BaseException:
        store.release(m)
        raise
    return m


def gpu_model(core_model, dev=None, **plan_options) -> GpuModel:
    """The GpuModel of core_model's file on `dev` (uploading the weights on first use);
    the caller holds one reference (release_gpu_model)."""
    from .plan import build_plan, gpu_options
    from .weights import GpuWeights
    dev = dev or get_device()
    key = (_source_key(core_model), id(dev), tuple(sorted(plan_options.items())))
    with _lock:
        g = _models.get(key)
        if g is None:
            prepare_model(core_model)
            opts = gpu_options(dev, **plan_options)
            plan = build_plan(core_model, opts)
            weights = GpuWeights(dev, plan, getattr(core_model, "source", None) or core_model.path)
            g = GpuModel(key, dev, plan, weights, opts)
            _models[key] = g
        g.refs += 1
        return g


def release_gpu_model(g: GpuModel) -> None:
    with _lock:
        g.refs -= 1
        if g.refs <= 0 and _models.get(g.key) is g:
            del _models[g.key]
            g.destroy()


def loaded() -> list[tuple[str, int, int]]:
    """(device, weight bytes, sessions) of every model on a GPU."""
    with _lock:
        return [(g.dev.describe(), g.weights.nbytes, g.refs) for g in _models.values()]


def open_gpu_session(core_model, n_ctx: int, dev=None, **plan_options):
    """A GPU session of core_model's file: the interface of core_model.Session."""
    from .session import GpuSession
    g = gpu_model(core_model, dev, **plan_options)
    return GpuSession(g, core_model, n_ctx)  # owns the reference from here, failure included


def resolve_device(device: str) -> str:
    """"cpu", "gpu" or "auto" -> "cpu" or "gpu". auto: a real GPU when there is one,
    else the CPU core (a software adapter such as lavapipe is slower than the core)."""
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        ok, why = available()
        if not ok:
            raise GPUUnavailable(f"device='gpu': {why}")
        return "gpu"
    if device == "auto":
        return "gpu" if has_hardware_gpu() else "cpu"
    raise RealmError(f"unknown device {device!r} (cpu, gpu or auto)")
