"""`realm info`: the WebGPU adapters wgpu sees, their type, limits and features."""
from __future__ import annotations

SHOWN_LIMITS = ("max-storage-buffer-binding-size", "max-buffer-size", "max-storage-buffers-per-shader-stage",
                "max-compute-invocations-per-workgroup", "max-compute-workgroup-storage-size",
                "max-compute-workgroups-per-dimension")


def _size(v: int) -> str:
    return f"{v / (1 << 30):.0f} GiB" if v >= 1 << 30 and v % (1 << 30) == 0 else (
        f"{v / (1 << 20):.0f} MiB" if v >= 1 << 20 else str(v))


def adapters_report() -> str:
    """A few lines per adapter, then which one --device gpu / auto would use."""
    from . import device
    try:
        ads = device.adapters()
    except device.GPUUnavailable as e:
        return f"WebGPU: unavailable ({e})"
    except Exception as e:
        return f"WebGPU: unavailable ({e.__class__.__name__}: {e})"
    if not ads:
        return "WebGPU: no adapters (install a Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1)"
    out = ["WebGPU adapters (wgpu-native):"]
    for a in ads:
        i = a["info"]
        out.append(f"  {i.get('device') or i.get('description')}: {i.get('adapter_type')}, {i.get('backend_type')}"
                   f" ({i.get('vendor', '')} {i.get('description', '')})".rstrip())
        lim = a["limits"]
        out.append("    limits: " + ", ".join(f"{k.replace('max-', '')} {_size(int(lim[k]))}" for k in SHOWN_LIMITS if k in lim))
        feats = [f for f in a["features"] if f in ("shader-f16", "subgroup", "timestamp-query")]
        out.append("    features: " + (", ".join(feats) or "none of shader-f16, subgroup, timestamp-query"))
    ok, why = device.available()
    if ok:
        d = device.get_device()
        kind = "software (CPU): --device auto stays on the CPU core" if d.is_software else "hardware: --device auto uses it"
        out.append(f"  --device gpu uses: {d.describe()}; {kind}")
    else:
        out.append(f"  --device gpu: unavailable ({why})")
    return "\n".join(out)
