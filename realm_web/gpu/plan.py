"""The plan: the core's description of a forward step (core/api_gpu.c, docs/GPU.md)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from .. import abi
from ..core_model import pack_handles
from ..errors import RealmError, core_error

PLAN_ABI = abi.CONSTANTS["GPU_OPTIONS_VERSION"]
OPT_F16, OPT_SUBGROUPS, OPT_SOFTWARE = 1, 2, 4


def subgroup_min_size(info: dict) -> int:
    # wgpu-py 0.32 spells the key "stackgroup_min_size"
    return int(info.get("subgroup_min_size") or info.get("stackgroup_min_size") or 0)


def gpu_options(dev, max_batch: int = abi.EVAL_BATCH, force_tpr: int = 0, software: bool | None = None,
                f16: bool | None = None, subgroups: bool | None = None, max_binding: int | None = None) -> dict:
    """The GpuOptions realm_gpu_plan takes (core/abi.json), describing `dev` (overridable for tests;
    max_binding: a smaller largest binding, so tests split tensors into parts)."""
    lim = dev.limits
    f16 = ("shader-f16" in dev.features) if f16 is None else f16
    subgroups = ("subgroup" in dev.features) if subgroups is None else subgroups
    software = dev.is_software if software is None else software
    flags = (OPT_F16 if f16 else 0) | (OPT_SUBGROUPS if subgroups else 0) | (OPT_SOFTWARE if software else 0)
    bind = int(lim.get("max-storage-buffer-binding-size", 128 << 20))
    if max_binding:
        bind = min(bind, int(max_binding))
    buf = int(lim.get("max-buffer-size", 256 << 20))
    return {"version": PLAN_ABI, "flags": flags, "max_binding": bind, "max_buffer": buf,
            "max_invocations": int(lim.get("max-compute-invocations-per-workgroup", 256)),
            "max_wg_x": int(lim.get("max-compute-workgroup-size-x", 256)),
            "max_groups": int(lim.get("max-compute-workgroups-per-dimension", 65535)),
            "max_wg_storage": int(lim.get("max-compute-workgroup-storage-size", 16384)),
            "subgroup_min": subgroup_min_size(dev.info), "max_batch": int(max_batch), "force_tpr": int(force_tpr)}


def pack_options(opts: dict) -> bytes:
    """GpuOptions bytes; fields not given are 0 (the core's defaults)."""
    return abi.pack("GpuOptions", {f: int(opts.get(f, 0)) for f in abi.STRUCTS["GpuOptions"]["fields"]})


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
            raise core_error(c, core_model.path)


def build_plan(core_model, opts: dict) -> Plan:
    """Ask the core for the plan of `core_model` on an adapter described by `opts` (gpu_options)."""
    prepare(core_model)
    c = core_model.core
    with c.lock:
        data = pack_options(opts)
        op = c.alloc(len(data))
        lp = c.alloc(8)
        try:
            c.write(op, data)
            p = c.call("realm_gpu_plan", core_model.handle, op, lp)
            if not p:
                raise core_error(c, "GPU plan")
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
    from ..core_model import read_model_info
    with core_model.core.lock:
        return read_model_info(core_model.core, core_model.handle)


def build_lora_plan(core_model, opts: dict, pairs) -> dict:
    """The core's ops and tensors that apply [(LoraAdapter, scale), ...] on top of the plan for
    `opts` (realm_gpu_lora_plan; docs/GPU.md, "LoRA adapters")."""
    c = core_model.core
    n = len(pairs)
    with c.lock:
        data = pack_options(opts)
        op = c.alloc(len(data))
        ap = c.alloc(max(12 * n, 16))
        lp = c.alloc(8)
        try:
            c.write(op, data)
            handles = pack_handles(c, [a.handle for a, _ in pairs])
            c.write(ap, handles + b"".join(struct.pack("<f", sc) for _, sc in pairs))
            p = c.call("realm_gpu_lora_plan", core_model.handle, op, ap, ap + len(handles), n, lp)
            if not p:
                raise core_error(c, "GPU LoRA plan")
            ln = struct.unpack("<Q", c.read_bytes(lp, 8))[0]
            text = c.read_bytes(p, ln).decode("utf-8")
            c.free(p)
        finally:
            c.free(op)
            c.free(ap)
            c.free(lp)
    data = json.loads(text)
    if data.get("abi") != PLAN_ABI:
        raise RealmError(f"GPU LoRA plan ABI {data.get('abi')} (this host speaks {PLAN_ABI})")
    return data
