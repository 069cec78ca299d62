"""WebGPU adapters and devices through wgpu-py (wgpu-native: Vulkan, Metal, D3D12).

One device per process (per adapter), shared by every GPU model and session.
Devices are always created with `required_limits` raised to what the adapter
offers for the limits this backend relies on (storage binding size, buffer
size, storage buffers per stage, workgroup sizes): without them wgpu gives the
WebGPU defaults (128 MiB bindings, 256 MiB buffers) whatever the hardware.
Optional features (`shader-f16`, `subgroup`) are requested when the adapter has
them; the plan (core/api_gpu.c) then picks kernel variants that use them.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from ..errors import RealmError

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # the Vulkan loader complains without it

# limits we raise to the adapter's maximum
_LIMITS = (
    "max-storage-buffer-binding-size", "max-buffer-size", "max-storage-buffers-per-shader-stage",
    "max-compute-invocations-per-workgroup", "max-compute-workgroup-size-x",
    "max-compute-workgroup-storage-size", "max-compute-workgroups-per-dimension",
    "max-uniform-buffer-binding-size", "max-bind-groups",
)
_OPTIONAL_FEATURES = ("shader-f16", "subgroup")


class GPUUnavailable(RealmError):
    """No WebGPU adapter (wgpu missing, no Vulkan/Metal/D3D12 driver, ...)."""


def _wgpu():
    try:
        import wgpu
        import wgpu.backends.wgpu_native  # noqa: F401  (registers the backend, version info)
    except Exception as e:  # ImportError, or the native library failing to load
        raise GPUUnavailable(f"wgpu is not usable ({e.__class__.__name__}: {e}); pip install wgpu") from None
    return wgpu


@dataclass
class Device:
    """A wgpu device with what the planner needs to know about it."""
    adapter: object
    device: object
    info: dict
    limits: dict
    features: frozenset
    lock: threading.RLock = field(default_factory=threading.RLock)
    _pipelines: object = None

    @property
    def name(self) -> str:
        return self.info.get("device") or self.info.get("description") or "?"

    @property
    def adapter_type(self) -> str:
        """'DiscreteGPU', 'IntegratedGPU', 'VirtualGPU', 'CPU' or 'Unknown'."""
        return str(self.info.get("adapter_type", "Unknown"))

    @property
    def is_software(self) -> bool:
        return self.adapter_type == "CPU"

    @property
    def pipelines(self):
        if self._pipelines is None:
            from .kernels import PipelineCache
            self._pipelines = PipelineCache(self.device)
        return self._pipelines

    def describe(self) -> str:
        return f"{self.name} ({self.adapter_type}, {self.info.get('backend_type', '?')})"


def adapters() -> list[dict]:
    """Every adapter wgpu sees: info, limits, features (for `realm info`)."""
    wgpu = _wgpu()
    out = []
    for a in wgpu.gpu.enumerate_adapters_sync():
        out.append({"info": dict(a.info), "limits": dict(a.limits), "features": sorted(a.features)})
    return out


def _pick_adapter(wgpu, want_hardware: bool):
    a = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    if a is None:
        raise GPUUnavailable("no WebGPU adapter (install a Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1)")
    if want_hardware and a.info.get("adapter_type") == "CPU":
        for b in wgpu.gpu.enumerate_adapters_sync():
            if b.info.get("adapter_type") in ("DiscreteGPU", "IntegratedGPU") and b.info.get("backend_type") != "OpenGL":
                return b
    return a


_devices: dict[str, Device] = {}
_dev_lock = threading.Lock()


def get_device(kind: str = "any") -> Device:
    """The process's device. kind: "any" (the preferred adapter, software ones included)
    or "hardware" (raise GPUUnavailable unless the adapter is a real GPU)."""
    with _dev_lock:
        dev = _devices.get("default")
        if dev is None:
            wgpu = _wgpu()
            try:
                a = _pick_adapter(wgpu, want_hardware=True)
            except GPUUnavailable:
                raise
            except Exception as e:
                raise GPUUnavailable(f"no WebGPU adapter: {e}") from None
            lim = a.limits
            required = {k: lim[k] for k in _LIMITS if k in lim}
            feats = [f for f in _OPTIONAL_FEATURES if f in a.features]
            d = a.request_device_sync(required_features=feats, required_limits=required)
            dev = Device(adapter=a, device=d, info=dict(a.info), limits=dict(d.limits),
                         features=frozenset(d.features))
            _devices["default"] = dev
    if kind == "hardware" and dev.is_software:
        raise GPUUnavailable(f"the only WebGPU adapter is a software one: {dev.describe()}")
    return dev


def available() -> tuple[bool, str]:
    """(True, description) when a device can be had, else (False, the reason)."""
    try:
        return True, get_device().describe()
    except GPUUnavailable as e:
        return False, str(e)
    except Exception as e:  # a driver failing in some other way
        return False, f"{e.__class__.__name__}: {e}"


def has_hardware_gpu() -> bool:
    """True when wgpu sees a real GPU (for device="auto"); creates no device."""
    try:
        wgpu = _wgpu()
        for a in wgpu.gpu.enumerate_adapters_sync():
            i = a.info
            if i.get("adapter_type") in ("DiscreteGPU", "IntegratedGPU") and i.get("backend_type") != "OpenGL":
                return True
    except Exception:
        return False
    return False
