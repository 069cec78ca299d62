"""WGSL sources and compute pipelines.

The kernels live in `wgsl/` (copied into the package as `realm_web/wgsl/` by
`python build.py`); every host reads the same files. A kernel file may use
four preprocessor lines, all WGSL comments, so each file stays readable WGSL:

    //#include NAME.wgsl     the text of NAME.wgsl (each file at most once per module)
    //#if DEFINE            keep the lines up to //#else or //#endif when DEFINE is set
    //#else
    //#endif

The defines are the plan's per-kernel list (F16, SUBGROUPS), plus
SUBGROUPS_ENABLE where the host's WGSL compiler wants `enable subgroups;`
(browsers do; wgpu-native's naga rejects it). Everything else is fixed with
WGSL `override` constants at pipeline creation. docs/GPU.md has the details.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

_PKG_WGSL = Path(__file__).resolve().parent.parent / "wgsl"
_SRC_WGSL = Path(__file__).resolve().parents[2] / "wgsl"


def wgsl_dir() -> Path:
    """realm_web/wgsl (installed), else the source checkout's wgsl/ (REALM_WGSL overrides)."""
    env = os.environ.get("REALM_WGSL")
    if env:
        return Path(env)
    # In a source checkout prefer wgsl/ itself: the package copy may be stale until build.py runs.
    if (_SRC_WGSL / "common.wgsl").is_file():
        return _SRC_WGSL
    return _PKG_WGSL


def preprocess(name: str, defines=(), read=None) -> str:
    """The WGSL module for kernel file `name` with `defines` set."""
    defines = set(defines)
    if read is None:
        base = wgsl_dir()

        def read(n: str) -> str:
            return (base / n).read_text()
    out: list[str] = []
    seen: set[str] = set()

    def emit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        stack: list[bool] = []  # whether each open //#if keeps its lines
        for line in read(n).splitlines():
            s = line.strip()
            if s.startswith("//#"):
                word, _, arg = s[3:].partition(" ")
                arg = arg.strip()
                if word == "if":
                    stack.append(arg in defines)
                elif word == "else":
                    if not stack:
                        raise ValueError(f"{n}: //#else without //#if")
                    stack[-1] = not stack[-1]
                elif word == "endif":
                    if not stack:
                        raise ValueError(f"{n}: //#endif without //#if")
                    stack.pop()
                elif word == "include":
                    if all(stack):
                        emit(arg)
                else:
                    raise ValueError(f"{n}: unknown directive {s!r}")
                continue
            if all(stack):
                out.append(line)
        if stack:
            raise ValueError(f"{n}: unterminated //#if")
    emit(name)
    return "\n".join(out) + "\n"


class PipelineCache:
    """Compute pipelines of one device, keyed by (file, entry, defines, constants)."""

    def __init__(self, device) -> None:
        self.device = device
        self._modules: dict = {}
        self._pipelines: dict = {}
        self._lock = threading.Lock()

    def get(self, file: str, entry: str = "main", defines=(), constants: dict | None = None):
        defines = tuple(sorted(defines))
        consts = tuple(sorted((constants or {}).items()))
        key = (file, entry, defines, consts)
        with self._lock:
            p = self._pipelines.get(key)
            if p is not None:
                return p
            mkey = (file, defines)
            mod = self._modules.get(mkey)
            if mod is None:
                code = preprocess(file, defines)
                mod = self.device.create_shader_module(label=file, code=code)
                self._modules[mkey] = mod
            p = self.device.create_compute_pipeline(
                label=f"{file}:{entry}", layout="auto",
                compute={"module": mod, "entry_point": entry, "constants": {k: v for k, v in consts}})
            self._pipelines[key] = p
            return p
