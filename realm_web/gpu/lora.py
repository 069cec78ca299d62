"""LoRA adapters on the GPU: a session's adapters as ops after the base matmuls they adapt.

The core decides everything (core/api_gpu.c, realm_gpu_lora_plan; docs/GPU.md, "LoRA
adapters"): for a session's [(LoraAdapter, scale), ...] it lists the adapters' A and B
tensors (bytes in the core's memory: the file's F32 / F16 / Q8_0 data, as the CPU uses them) and the ops that follow each hooked op of the base plan
(an op with "hook": slot). The host uploads each tensor once per GpuModel and adapter
(shared by every session), keeps the session's scratch buffers and op parameters, and
dispatches the ops where the plan says. Numerics are core/lora.c's (tests/test_gpu_lora.py).
"""
from __future__ import annotations

import threading

import numpy as np

from . import buffers as B
from .plan import build_lora_plan
from .runner import compile_raw
from .weights import UNIFORM_ALIGN

_lock = threading.Lock()


def lora_tensor(gmodel, adapter, t: dict):
    """The GPU buffer of an adapter tensor t (an entry of a LoRA plan's "tensors"), uploaded on
    first use from the core's memory and shared by every session of gmodel."""
    key = (id(adapter), int(t["ptr"]))
    with _lock:
        cache = gmodel.__dict__.setdefault("_lora_tensors", {})
        hit = cache.get(key)
        if hit is not None and hit[0] is adapter:
            return hit[1]
        c = adapter.model.core
        n = int(t["nbytes"])
        with c.lock:
            data = np.frombuffer(c.read_bytes(int(t["ptr"]), n), np.uint8)
        buf = B.storage(gmodel.dev, n + 4, label=t["name"], data=np.concatenate([data, np.zeros(4, np.uint8)]),
                        copy_src=False)
        cache[key] = (adapter, buf)

        def forget(a, gm=gmodel, k=key):  # the adapter was freed: later sessions upload afresh
            with _lock:
                c2 = gm.__dict__.get("_lora_tensors", {})
                if k in c2 and c2[k][0] is a:
                    del c2[k]
        adapter.on_close(forget)
        return buf


class LoraOps:
    """One session's adapters on one GpuModel: the LoRA plan, its tensors, scratch buffers
    and parameter words."""

    def __init__(self, gmodel, core_model, pairs) -> None:
        self.gmodel = gmodel
        self.pairs = list(pairs)
        self.data = build_lora_plan(core_model, gmodel.opts, self.pairs)
        dev = self.dev = gmodel.dev
        self.tensors = {int(t["id"]): lora_tensor(gmodel, self.pairs[int(t["adapter"])][0], t)
                        for t in self.data["tensors"]}
        self.bufs = {b["name"]: B.storage(dev, int(b["bytes"]), label=b["name"]) for b in self.data["buffers"]}
        ops = self.data["ops"]
        words = np.zeros(max(1, len(ops)) * UNIFORM_ALIGN // 4, np.uint32)
        for i, o in enumerate(ops):
            p = np.asarray(o["p"], np.uint32)
            words[i * UNIFORM_ALIGN // 4:i * UNIFORM_ALIGN // 4 + p.size] = p
        U = B.usage()
        self.params = dev.device.create_buffer(label="lora op params", size=words.nbytes, usage=U.UNIFORM | U.COPY_DST)
        dev.device.queue.write_buffer(self.params, 0, words)

    @property
    def empty(self) -> bool:
        return not self.data["ops"]

    def compile(self, resolve, step_bufs) -> dict:
        """slot -> compiled ops, buffer names other than the scratch bound through resolve."""
        def res(name):
            return self.bufs[name] if name in self.bufs else resolve(name)
        out: dict = {}
        for i, o in enumerate(self.data["ops"]):
            op = compile_raw(self.dev, self.data["kernels"], self.params, i * UNIFORM_ALIGN, o, res,
                             lambda t, p: self.tensors[t], step_bufs[o["step"]])
            out.setdefault(int(o["slot"]), []).append(op)
        return out

    def destroy(self) -> None:
        for b in self.bufs.values():
            b.destroy()
        self.bufs.clear()
