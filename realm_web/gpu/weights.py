"""Weights on the GPU: uploaded once per model file per device, shared by every session.

Each tensor of the plan becomes one storage buffer per part (the core splits
tensors larger than the adapter's maxStorageBufferBindingSize by rows). Bytes
go straight from the memory-mapped file to the GPU, part by part: no copy of
the weights is kept in wasm or Python memory. The ops' static parameter words
live here too (one uniform buffer, each op's words at a 256-byte offset).
"""
from __future__ import annotations

import mmap
import os
import threading

import numpy as np

from . import buffers as B

UNIFORM_ALIGN = 256
UPLOAD_CHUNK = 64 << 20


class GpuWeights:
    def __init__(self, dev, plan, source) -> None:
        """source: the model's byte source (realm_web.sources: a FileSource, or anything with
        read(offset, n)), or a file path."""
        self.dev = dev
        self.plan = plan
        self.parts: dict[tuple[int, int], object] = {}
        self.nbytes = 0
        self.rope_freqs = None
        self.rope_freqs_long = None  # (min_ctx, factors) or None
        path = getattr(source, "path", None) if not isinstance(source, (str, os.PathLike)) else source
        mm = None
        if path is not None and os.path.isfile(path):
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            size = len(mm)

            def read(off: int, n: int):
                return np.frombuffer(mm, np.uint8, n, off)
        else:
            size = int(source.size)

            def read(off: int, n: int):
                return np.frombuffer(source.read(off, n), np.uint8)
        try:
            for t in plan.tensors:
                for pi, p in enumerate(t["parts"]):
                    off, n = int(p["offset"]), int(p["nbytes"])
                    if off + n > size:
                        raise ValueError(f"tensor {t['name']} runs past the end of the file")
                    # +4: kernels read whole words, possibly one past an unaligned end
                    buf = B.storage(dev, n + 4, label=f"{t['name']}#{pi}", copy_src=False)
                    for start in range(0, n & ~3, UPLOAD_CHUNK):  # bounded staging
                        k = min(UPLOAD_CHUNK, (n & ~3) - start)
                        dev.device.queue.write_buffer(buf, start, read(off + start, k))
                    if n & 3:
                        tail = np.zeros(4, np.uint8)
                        tail[:n & 3] = read(off + (n & ~3), n & 3)
                        dev.device.queue.write_buffer(buf, n & ~3, tail)
                    self.parts[(t["id"], pi)] = buf
                    self.nbytes += n
            rf = plan.data.get("rope_freqs")
            if rf:
                self.rope_freqs = read(int(rf["offset"]), int(rf["nbytes"])).view(np.float32).copy()
            rl = plan.data.get("rope_freqs_long")  # phi3's LongRoPE: for sessions of min_ctx tokens or more
            if rl:
                self.rope_freqs_long = (int(rl["min_ctx"]),
                                        read(int(rl["offset"]), int(rl["nbytes"])).view(np.float32).copy())
            if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)  # the file's pages need not stay in our RSS
        finally:
            if mm is not None:
                mm.close()
        # static op parameters: program -> list of byte offsets into self.params
        words: list[np.ndarray] = []
        self.param_offsets: dict[str, list[int]] = {}
        off = 0
        for name, ops in plan.programs.items():
            offs = []
            for o in ops:
                w = np.zeros(UNIFORM_ALIGN // 4, np.uint32)
                p = np.asarray(o["p"], np.uint32)
                w[:p.size] = p
                words.append(w)
                offs.append(off)
                off += UNIFORM_ALIGN
            self.param_offsets[name] = offs
        data = np.concatenate(words) if words else np.zeros(4, np.uint32)
        U = B.usage()
        self.params = dev.device.create_buffer(label="op params", size=max(16, data.nbytes), usage=U.UNIFORM | U.COPY_DST)
        dev.device.queue.write_buffer(self.params, 0, data)
        self.refs = 0
        self.lock = threading.Lock()

    def buffer(self, tensor: int, part: int):
        return self.parts[(tensor, part)]

    def destroy(self) -> None:
        for b in self.parts.values():
            b.destroy()
        self.parts.clear()
        self.params.destroy()
