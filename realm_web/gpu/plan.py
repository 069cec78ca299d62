"""The plan: the core's description of a forward step (core/api_gpu.c, docs/GPU.md)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..errors import RealmError

PLAN_ABI = 1
OPT_F16, OPT_SUBGROUPS, OPT_SOFTWARE = 1, 2, 4


def subgroup_min_size(info: dict) -> int:
    # wgpu-py 0.32 spells the key "stackgroup_min_size"
    return int(info.get("subgroup_min_size") or info.get("stackgroup_min_size") or 0)


def options_words(dev, max_batch: int = 64, force_tpr: int = 0, software: bool | None = None,
                  f16: bool | None = None, subgroups: bool | None = None) -> list[int]:
    """The 16 u32 words realm_gpu_plan takes, describing `dev` (overridable for tests)."""
    lim = dev.limits
    f16 = ("shader-f16" in dev.features) if f16 is None else f16
    subgroups = ("subgroup" in dev.features) if subgroups is None else subgroups
    software = dev.is_software if software is None else software
    flags = (OPT_F16 if f16 else 0) | (OPT_SUBGROUPS if subgroups else 0) | (OPT_SOFTWARE if software else 0)
    bind = int(lim.get("max-storage-buffer-binding-size", 128 << 20))
    buf = int(lim.get("max-buffer-size", 256 << 20))
    return [PLAN_ABI, flags, bind & 0xFFFFFFFF, bind >> 32, buf & 0xFFFFFFFF, buf >> 32,
            int(lim.get("max-compute-invocations-per-workgroup", 256)),
            int(lim.get("max-compute-workgroup-size-x", 256)),
            int(lim.get("max-compute-workgroups-per-dimension", 65535)),
            int(lim.get("max-compute-workgroup-storage-size", 16384)),
            subgroup_min_size(dev.info), int(max_batch), int(force_tpr), 0, 0, 0]


@dataclass
class Plan:
    data: dict

    @property
    def model(self) -> dict:
        return self.data["model"]

    @property
    def tensors(self) -> list[dict]:
        return self.data["tensors"]

    @property
    def kernels(self) -> list[dict]:
        return self.data["kernels"]

    @property
    def programs(self) -> dict:
        return self.data["programs"]

    @property
    def max_batch(self) -> int:
        return int(self.data["max_batch"])

    def weight_bytes(self) -> int:
        return sum(t["nbytes"] for t in self.tensors)


def prepare(core_model) -> None:
    """Bind the model's tensors in the core without weights in wasm memory (idempotent)."""
    c = core_model.core
    with c.lock:
        if not c.call("realm_gpu_prepare", core_model.handle):
            raise RealmError(f"{core_model.path}: {c.last_error()}")


def build_plan(core_model, words: list[int]) -> Plan:
    """Ask the core for the plan of `core_model` on an adapter described by `words`."""
    prepare(core_model)
    c = core_model.core
    with c.lock:
        op = c.alloc(64)
        lp = c.alloc(8)
        try:
            c.write(op, struct.pack("<16I", *words))
            p = c.call("realm_gpu_plan", core_model.handle, op, lp)
            if not p:
                raise RealmError(f"GPU plan: {c.last_error()}")
            n = struct.unpack("<Q", c.read_bytes(lp, 8))[0]
            text = c.read_bytes(p, n).decode("utf-8")
            c.free(p)
        finally:
            c.free(op)
            c.free(lp)
    data = json.loads(text)
    if data.get("abi") != PLAN_ABI:
        raise RealmError(f"GPU plan ABI {data.get('abi')} (this host speaks {PLAN_ABI})")
    return Plan(data)


def model_info(core_model):
    """The full ModelInfo (a vocab-only CoreModel has only n_vocab until prepared)."""
    from ..core_model import ModelInfo
    c = core_model.core
    with c.lock:
        words = c.alloc(64)
        try:
            c.call("realm_model_info", core_model.handle, words)
            w = struct.unpack("<8I2i4I2f", c.read_bytes(words, 64))
        finally:
            c.free(words)
    return ModelInfo(*w[:10], bool(w[10]), bool(w[11]), *w[12:])
