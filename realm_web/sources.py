"""Where a model's bytes come from. A source gives the core the GGUF header and
copies the tensor data straight into the core's memory, in chunks, so no host
ever holds a second whole copy of the weights.

Native hosts use FileSource (a memory-mapped file). The Pyodide host supplies a
source whose bytes come from JS (fetch, File, cache) with the same methods.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path

from .errors import ModelFormatError, RealmError

COPY_CHUNK = 256 << 20


class FileSource:
    """A GGUF file on disk, read through a memory map."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = str(self.path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise RealmError(f"no such model file: {self.path}") from None
        self.size = st.st_size
        # the same file reached by another path, or rewritten in place, is told apart
        self.identity = ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self.size == 0:
            raise ModelFormatError(f"{self.path}: empty file, not a GGUF")

    def _map(self) -> mmap.mmap:
        with open(self.path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def read(self, offset: int, n: int) -> bytes:
        mm = self._map()
        try:
            return mm[offset:offset + n]
        finally:
            mm.close()

    def copy_to_core(self, core, dst: int, offset: int, n: int) -> None:
        """Copy file bytes [offset, offset+n) to core memory at dst, page cache to wasm memory."""
        import numpy as np
        mm = self._map()
        try:
            for start in range(0, n, COPY_CHUNK):
                k = min(COPY_CHUNK, n - start)
                core.view(dst + start, np.uint8, k)[:] = np.frombuffer(mm, np.uint8, k, offset + start)
            if hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)  # the file's pages need not stay in our RSS
        finally:
            mm.close()


def as_source(src) -> "FileSource":
    """A path becomes a FileSource; anything with read/copy_to_core/size/identity is used as is."""
    if hasattr(src, "copy_to_core") and hasattr(src, "identity"):
        return src
    from .default_model import resolve
    return FileSource(resolve(src))
