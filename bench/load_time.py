#!/usr/bin/env python3
"""How long opening a model takes in the wasmtime host: header, the one copy of the
weights into wasm memory, realm_model_load (tokenizer, binding, the x4 repack).

    python bench/load_time.py MODEL.gguf
    python bench/load_time.py MODEL.gguf --wasm a.wasm,b.wasm     # builds side by side

Best of --repeat loads (a fresh instance each), wall time. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from realm_web.core_model import CoreModel
from realm_web.wasm_host import WasmCore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--wasm", help="comma-separated realm*.wasm builds (default: the one the host picks)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = Path(args.model).stat().st_size
    for wasm in (args.wasm.split(",") if args.wasm else [None]):
        best, name = float("inf"), ""
        for _ in range(args.repeat):
            core = WasmCore(path=wasm) if wasm else WasmCore()
            name = str(core.path)
            t = time.perf_counter()
            m = CoreModel(args.model, core=core, threads=1)
            best = min(best, time.perf_counter() - t)
            m.close()
        print(f"{name}: {Path(args.model).name} ({size / 1e6:.0f} MB) loads in {best * 1000:.0f} ms")


if __name__ == "__main__":
    main()
