"""Small edits of a linked wasm binary (used by build.py and the wasmtime host).

A shared memory must declare a maximum size. wasm-ld parses --max-memory as
32 bits, and hosts differ in what they accept (V8: at most 16 GiB for
Memory64; wasmtime: whatever it reserves), so the maximum is written into the
module's memory import here.
"""
from __future__ import annotations


def _leb(b: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return value, i


def _uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        x, v = v & 0x7F, v >> 7
        out.append(x | (0x80 if v else 0))
        if not v:
            return bytes(out)


def set_imported_memory_max(wasm: bytes, max_pages: int) -> bytes:
    """The module with its imported memory's maximum set to max_pages (import
    section rewritten; every other byte kept)."""
    i = 8
    while i < len(wasm):
        sid = wasm[i]
        size, body = _leb(wasm, i + 1)
        end = body + size
        if sid == 2:  # imports: module name, field name, kind, description
            count, k = _leb(wasm, body)
            out = bytearray(_uleb(count))
            for _ in range(count):
                start = k
                for _name in range(2):
                    n, k = _leb(wasm, k)
                    k += n
                kind = wasm[k]
                names = wasm[start:k]
                k += 1
                if kind == 2:  # memory: flags (1 max, 2 shared, 4 memory64), min, [max]
                    flags = wasm[k]
                    mn, k = _leb(wasm, k + 1)
                    if flags & 1:
                        _, k = _leb(wasm, k)
                    out += names + bytes([2, flags | 1]) + _uleb(mn) + _uleb(max_pages)
                    continue
                if kind == 0:  # function: type index
                    _, k = _leb(wasm, k)
                elif kind == 1:  # table: reftype, flags, min, [max]
                    flags = wasm[k + 1]
                    _, k = _leb(wasm, k + 2)
                    if flags & 1:
                        _, k = _leb(wasm, k)
                elif kind == 3:  # global: valtype, mutability
                    k += 2
                else:
                    raise ValueError(f"import kind {kind} not handled")
                out += wasm[start:k]
            return wasm[:i] + bytes([2]) + _uleb(len(out)) + bytes(out) + wasm[end:]
        i = end
    raise ValueError("the module has no import section")
