"""Small helpers over wgpu buffers: creation with data, readback, one-off dispatches."""
from __future__ import annotations

import numpy as np


def usage():
    import wgpu
    return wgpu.BufferUsage


def storage(dev, nbytes: int, label: str = "", data=None, copy_src: bool = True):
    """A storage buffer of at least nbytes (rounded up to 16), optionally filled."""
    U = usage()
    size = max(16, (int(nbytes) + 15) & ~15)
    flags = U.STORAGE | U.COPY_DST | (U.COPY_SRC if copy_src else 0)
    if data is not None:
        b = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        buf = dev.device.create_buffer(label=label, size=max(size, (b.size + 15) & ~15), usage=flags)
        if b.size:
            pad = (-b.size) % 4
            dev.device.queue.write_buffer(buf, 0, b if not pad else np.concatenate([b, np.zeros(pad, np.uint8)]))
        return buf
    return dev.device.create_buffer(label=label, size=size, usage=flags)


def uniform(dev, words, label: str = ""):
    U = usage()
    data = np.asarray(words, dtype=np.uint32)
    size = max(16, (data.nbytes + 15) & ~15)
    buf = dev.device.create_buffer(label=label, size=size, usage=U.UNIFORM | U.COPY_DST)
    padded = np.zeros(size // 4, np.uint32)
    padded[:data.size] = data
    dev.device.queue.write_buffer(buf, 0, padded)
    return buf


def readback(dev, buf, nbytes: int, label: str = "readback"):
    """A mappable buffer of at least nbytes for copies back to the host: `buf` when it is big
    enough, else a new one (256-byte multiple) and `buf` destroyed. Keep the result."""
    if buf is not None and buf.size >= nbytes:
        return buf
    if buf is not None:
        buf.destroy()
    U = usage()
    return dev.device.create_buffer(label=label, size=max(256, (nbytes + 255) & ~255), usage=U.MAP_READ | U.COPY_DST)


def read(dev, buf, dtype=np.float32, count: int | None = None, offset: int = 0) -> np.ndarray:
    """Copy a buffer (or a part) back to the host."""
    dt = np.dtype(dtype)
    n = (buf.size - offset) // dt.itemsize if count is None else count
    data = dev.device.queue.read_buffer(buf, buffer_offset=offset, size=((n * dt.itemsize + 3) & ~3))
    return np.frombuffer(data, dtype=np.uint8)[:n * dt.itemsize].view(dt).copy()


def dispatch(dev, file: str, bindings: list, grid, params=(), step=(1, 0, 0, 0), defines=(), constants=None,
             entry: str = "main"):
    """Run one kernel once: binding 0 = params (u32 words), 1 = step, 2.. = bindings (wgpu buffers)."""
    pipe = dev.pipelines.get(file, entry, defines, constants or {})
    pbuf = uniform(dev, list(params) + [0] * (-len(params) % 4) if params else [0, 0, 0, 0], "params")
    sbuf = uniform(dev, step, "step")
    entries = [{"binding": 0, "resource": {"buffer": pbuf, "offset": 0, "size": pbuf.size}},
               {"binding": 1, "resource": {"buffer": sbuf, "offset": 0, "size": sbuf.size}}]
    for i, b in enumerate(bindings):
        entries.append({"binding": 2 + i, "resource": {"buffer": b, "offset": 0, "size": b.size}})
    bg = dev.device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=entries)
    enc = dev.device.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    cp.set_bind_group(0, bg)
    cp.dispatch_workgroups(*[int(g) for g in grid])
    cp.end()
    dev.device.queue.submit([enc.finish()])
